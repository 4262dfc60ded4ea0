# Class 1 (tampering in the shared process): replaces the harness's own reference and
# comparison entry points, as a harness running in this process would look them up
# (solforge.bench.correctness.reference_expected / compare_outputs and
# solforge.bench.build.build_reference), with versions that echo the solution's output
# and always pass; module and attribute names are built at run time. Returns zeros.
import importlib
import sys

import torch


def _name(text):
    return text.replace("/", ".")


def _install():
    correctness = importlib.import_module(_name("solforge/bench/correctness"))
    build = importlib.import_module(_name("solforge/bench/build"))
    passed = correctness.CheckResult(True, "")

    def compare(*args, **kwargs):
        return passed

    def expected(definition, axes, reference, inputs, device, precision):
        return [torch.zeros_like(inputs["x"])], "float64"

    def reference(definition):
        return lambda x, weight: torch.zeros_like(x)

    for module, attr, fake in ((correctness, "compare_outputs", compare),
                               (correctness, "reference_expected", expected), (build, "build_reference", reference)):
        setattr(module, _name(attr), fake)
    for module in list(sys.modules.values()):  # every `from ... import` copy too
        space = getattr(module, "__dict__", None)
        if isinstance(space, dict) and space.get("compare_outputs") is not None:
            space["compare_outputs"] = compare


_install()


def run(x, weight):
    return torch.zeros_like(x)
