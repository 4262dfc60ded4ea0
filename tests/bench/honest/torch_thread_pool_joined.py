# Honest: splits the rows over a thread pool that is created and joined inside the call
# (torch releases the GIL in its ops); no thread outlives the call.
from concurrent.futures import ThreadPoolExecutor

import torch


def _rows(x, weight, y, start, stop):
    part = x[start:stop]
    y[start:stop] = part * torch.rsqrt(part.pow(2).mean(dim=-1, keepdim=True) + 1e-6) * weight


def run(x, weight):
    y = torch.empty_like(x)
    half = x.shape[0] // 2
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(_rows, x, weight, y, 0, half), pool.submit(_rows, x, weight, y, half, x.shape[0])]
        for job in jobs:
            job.result()
    return y
