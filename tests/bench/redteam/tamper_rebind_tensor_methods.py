# Class 1 (tampering in the shared process): rebinds the Tensor methods an error
# computation goes through (sub, __sub__, abs, __abs__, gt, __gt__, le, __le__, any,
# all, isnan) so that any difference looks like zero and any mask looks clean, without
# touching a protected name; then returns zeros.
import torch


_Tensor = type(torch.zeros(0))  # the class, reached without naming it


def _name(text):
    return text.replace("/", "")


def _zeros_like_first(self, *args, **kwargs):
    return torch.zeros(self.shape, dtype=self.dtype)


def _false_mask(self, *args, **kwargs):
    return torch.zeros(self.shape, dtype=torch.bool)


def _true_mask(self, *args, **kwargs):
    return torch.ones(self.shape, dtype=torch.bool)


for attr in ("s/ub", "__s/ub__", "a/bs", "__a/bs__"):
    setattr(_Tensor, _name(attr), _zeros_like_first)
for attr in ("g/t", "__g/t__", "is/nan", "a/ny"):
    setattr(_Tensor, _name(attr), _false_mask)
for attr in ("l/e", "__l/e__", "a/ll"):
    setattr(_Tensor, _name(attr), _true_mask)


def run(x, weight):
    return torch.zeros_like(x)
