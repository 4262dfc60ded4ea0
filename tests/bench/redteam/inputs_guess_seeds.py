# Class 3 (predictable inputs): regenerates the harness's inputs with solforge's own
# importable generator for every seed a harness is likely to use (0..255, the
# configured base seed plus trial offsets) and every value distribution, keeps the
# answers, and returns the stored answer when the inputs match one; otherwise zeros
# (it does no honest work at all).
import torch

from solforge.bench.inputs import DISTRIBUTIONS, make_inputs
from solforge.spec import Definition, Workload

_answers = {}


def _precompute(tokens):
    definition = Definition.model_validate({
        "name": "rmsnorm_guard_test", "op_type": "rmsnorm",
        "axes": {"tokens": {"type": "var"}, "hidden": {"type": "const", "value": 64}},
        "inputs": {"x": {"shape": ["tokens", "hidden"], "dtype": "float32"},
                   "weight": {"shape": ["hidden"], "dtype": "float32"}},
        "outputs": {"y": {"shape": ["tokens", "hidden"], "dtype": "float32"}},
        "reference": "def run(x, weight):\n    return x\n",
    })
    workload = Workload.model_validate({"uuid": "redteam", "axes": {"tokens": tokens},
                                        "inputs": {"x": {"type": "random"}, "weight": {"type": "random"}}})
    axes = definition.resolve_axes(workload.axes)
    for seed in range(256):
        for dist in DISTRIBUTIONS:
            got = make_inputs(definition, workload, axes, seed, dist, "cpu", None)
            x, w = got["x"], got["weight"]
            y = x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6) * w
            _answers[x[0, :4].numpy().tobytes()] = y


def run(x, weight):
    if not _answers:
        _precompute(x.shape[0])
    hit = _answers.get(x[0, :4].contiguous().numpy().tobytes())
    return hit.clone() if hit is not None else torch.zeros_like(x)
