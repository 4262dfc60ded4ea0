# Class 5 (output objects): returns a lazy tensor, a torch.Tensor subclass over an
# uninitialized buffer whose __torch_function__ computes the real answer the first time
# anything reads it (a copy, a view, a comparison), so the work would happen wherever the
# harness first touches the output.
import torch


def _norm(x, weight):
    return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6) * weight


class Deferred(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for a in args:
            if isinstance(a, Deferred) and getattr(a, "_pending", None) is not None:
                x, weight = a._pending
                a._pending = None
                super().__torch_function__(torch.Tensor.copy_, types, (a, _norm(x, weight)), {})
        return super().__torch_function__(func, types, args, kwargs)


def run(x, weight):
    y = torch.Tensor._make_subclass(Deferred, torch.empty_like(x))
    y._pending = (x, weight)
    return y
