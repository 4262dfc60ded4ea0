# Class 2 + 6 (reading and rewriting the harness from code the audit hook does not
# blame): the audit hook blames an event on the solution only when the frame that raised
# it lies in the solution's directory. This kernel writes a helper module to a
# temporary directory elsewhere and imports it; the helper walks the heap with
# gc.get_objects, finds the op recorder of the current call, and empties its tables
# after the kernel has run torch.nn.RMSNorm (the forbidden
# torch.nn.functional.rms_norm inside).
import importlib.util
import os
import shutil
import tempfile

import torch

_HELPER = '''
import gc

def scrub():
    for obj in gc.get_objects():
        if type(obj).__name__ == "OpRecorder":
            for value in vars(obj).values():
                if isinstance(value, dict):
                    value.clear()
'''


def _load_helper():
    where = tempfile.mkdtemp(prefix="rt-helper-")
    try:
        path = os.path.join(where, "rt_scrub.py")
        with open(path, "w") as f:
            f.write(_HELPER)
        spec = importlib.util.spec_from_file_location("rt_scrub", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        shutil.rmtree(where, ignore_errors=True)


_helper = _load_helper()
_layer = torch.nn.RMSNorm(64, eps=1e-6)


def run(x, weight):
    with torch.no_grad():
        _layer.weight.copy_(weight)
        y = _layer(x)
    _helper.scrub()
    return y
