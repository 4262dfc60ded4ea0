# Honest: seeds torch's generator for reproducibility (a habit from training code) and
# draws a random tie-break it never uses in the result.
import torch

torch.manual_seed(1234)


def run(x, weight):
    torch.manual_seed(0)
    _ = torch.rand(1)  # reproducible, and unrelated to the output
    x64 = x.double()
    y = x64 * torch.rsqrt(x64.square().mean(-1, keepdim=True) + 1e-6)
    return (y * weight.double()).float()
