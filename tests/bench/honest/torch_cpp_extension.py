# Honest: a C++ CPU kernel built with torch.utils.cpp_extension.load_inline from a
# pytorch solution (one row per loop iteration, float32).
from torch.utils.cpp_extension import load_inline

_CPP = r'''
#include <torch/extension.h>
#include <cmath>

torch::Tensor rmsnorm(torch::Tensor x, torch::Tensor weight) {
    auto xc = x.contiguous();
    auto y = torch::empty_like(xc);
    const int64_t rows = xc.size(0), hidden = xc.size(1);
    const float* xp = xc.data_ptr<float>();
    const float* wp = weight.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r) {
        double acc = 0.0;
        for (int64_t j = 0; j < hidden; ++j) acc += (double)xp[r * hidden + j] * xp[r * hidden + j];
        const float inv = 1.0f / std::sqrt((float)(acc / hidden) + 1e-6f);
        for (int64_t j = 0; j < hidden; ++j) yp[r * hidden + j] = xp[r * hidden + j] * inv * wp[j];
    }
    return y;
}
'''
_ext = load_inline(name="honest_rmsnorm_cpp", cpp_sources=[_CPP], functions=["rmsnorm"], verbose=False,
                   extra_cflags=["-O2"])


def run(x, weight):
    return _ext.rmsnorm(x, weight)
