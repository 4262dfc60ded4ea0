# Honest: a Triton kernel with @triton.autotune over block sizes and warps, keyed on the
# hidden size (runs under TRITON_INTERPRET=1 on a CPU). The sum of squares is a scalar
# loop: tl.sum is itself a @triton.jit helper, see exploits/honest_triton.py.
import torch
import triton
import triton.language as tl


@triton.autotune(
    configs=[triton.Config({"BLOCK": 64}, num_warps=1), triton.Config({"BLOCK": 128}, num_warps=2)],
    key=["hidden"],
)
@triton.jit
def _rmsnorm_kernel(x_ptr, w_ptr, y_ptr, hidden, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    acc = 0.0
    for j in range(hidden):
        v = tl.load(x_ptr + row * hidden + j)
        acc += v * v
    scale = 1.0 / tl.sqrt(acc / hidden + 1e-6)
    cols = tl.arange(0, BLOCK)
    mask = cols < hidden
    x = tl.load(x_ptr + row * hidden + cols, mask=mask, other=0.0)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0)
    tl.store(y_ptr + row * hidden + cols, x * scale * w, mask=mask)


def run(x, weight):
    y = torch.empty_like(x)
    rows, hidden = x.shape
    _rmsnorm_kernel[(rows,)](x, weight, y, hidden)
    return y
