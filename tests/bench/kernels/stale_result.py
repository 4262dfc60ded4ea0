"""Exploit: computes nothing and returns fresh uninitialized memory, hoping the caching
allocator hands back the buffer in which the reference just wrote the answer."""
import torch


def run(x, w):
    return torch.empty_like(x)
