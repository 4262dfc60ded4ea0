# Destination-passing style, partial write (want INCORRECT_NUMERICAL, "left unwritten").
# Declared destination-passing: it writes every row of the judge's output buffer but the
# last, hoping the buffer still holds an earlier call's answer or zeros there.
import torch


def run(x, weight, y):
    rows = x.shape[0] - 1
    part = x[:rows]
    torch.mul(part * torch.rsqrt(part.pow(2).mean(dim=-1, keepdim=True) + 1e-6), weight, out=y[:rows])
