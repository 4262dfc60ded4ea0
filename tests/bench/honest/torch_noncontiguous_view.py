# Honest: computes in a (hidden, tokens) layout and returns the transposed view, which is
# not contiguous; the values are the output's.
import torch


def run(x, weight):
    xt = x.t().contiguous()  # (hidden, tokens)
    inv = torch.rsqrt(xt.pow(2).mean(dim=0, keepdim=True) + 1e-6)  # (1, tokens)
    yt = xt * inv * weight[:, None]  # (hidden, tokens)
    return yt.t()  # (tokens, hidden), strides (1, tokens)
