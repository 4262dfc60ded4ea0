"""Fault: asks for a tensor of 2**50 floats (4 PiB)."""
import torch


def run(x, w):
    return torch.empty(2**50, dtype=torch.float32, device=x.device)
