"""Fault: touches more and more memory (1 GiB more per step), well past any sane limit."""
import torch


def run(x, w):
    held = []
    for _ in range(64):
        held.append(torch.ones(2**28, dtype=torch.float32))  # 1 GiB, written
    return x
