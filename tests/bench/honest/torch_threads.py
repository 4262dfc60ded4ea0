# Honest: plain torch math with torch's intra-op pool sized to the machine (2 threads).
import torch

torch.set_num_threads(2)


def run(x, weight):
    variance = x.pow(2).mean(dim=-1, keepdim=True)
    return x * torch.rsqrt(variance + 1e-6) * weight
