# Class 6 (forbidden call reached indirectly): a module that calls the forbidden op is
# written to disk at import time and imported from there; its text is assembled from
# pieces, so it is not in any source the harness parsed.
import importlib.util
import os

_TEXT = "\n".join([
    "import torch.nn.functional as F",
    "def norm(x, weight):",
    "    return F.{op}(x, (x.shape[-1],), weight, 1e-6)",
]).format(op="_".join(reversed(["norm", "rms"])))

_path = os.path.join(os.getcwd(), "helper_norm.py")  # the solution's own working directory
with open(_path, "w") as f:
    f.write(_TEXT)
_spec = importlib.util.spec_from_file_location("helper_norm", _path)
_helper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helper)


def run(x, weight):
    return _helper.norm(x, weight)
