// Faulty CUDA C++: a missing semicolon after the return.
#include <torch/extension.h>

__global__ void scale_kernel(const float* x, const float* w, float* y, int rows, int cols) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * cols) y[i] = x[i] * w[i % cols];
}

torch::Tensor run(torch::Tensor x, torch::Tensor w) {
    auto y = torch::empty_like(x);
    int rows = x.size(0), cols = x.size(1);
    scale_kernel<<<(rows * cols + 255) / 256, 256>>>(x.data_ptr<float>(), w.data_ptr<float>(), y.data_ptr<float>(), rows, cols);
    return y
}
