# Honest: a Triton kernel whose block size comes from @triton.heuristics (the next power
# of two of the hidden size), launched one program per row (TRITON_INTERPRET=1 on a CPU).
import torch
import triton
import triton.language as tl


@triton.heuristics({"BLOCK": lambda args: triton.next_power_of_2(args["hidden"])})
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
