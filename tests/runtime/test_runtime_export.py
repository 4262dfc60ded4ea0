"""The exported hf-kernels package loads through the real `kernels` library and through
transformers' KernelConfig, in a process where solforge cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from solforge.runtime.export import export_hf_kernels
from solforge.spec import SpecError

PRELUDE = """
import json, sys
sys.modules["solforge"] = None  # loading the package must not need solforge
import torch
from transformers import AutoConfig, AutoModelForCausalLM
cfg = json.load(open(sys.argv[1]))
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg), dtype=torch.bfloat16).eval()
ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    ref = model(input_ids=ids).logits.float()
"""
EPILOGUE = """
with torch.no_grad():
    out = model(input_ids=ids).logits.float()
pkg = [m for name, m in sys.modules.items() if name.endswith("._kernels") and "solforge_kernels" in name]
print(json.dumps({"ops": sum(len(m._ops) for m in pkg), "max_rel": ((out - ref).abs().max() / ref.abs().max()).item(),
                  "forward": type(model.model.norm.forward.__func__).__name__,
                  "forward_module": model.model.norm.forward.__func__.__module__}))
"""


def _run(code: str, config) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(config)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def package(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "solforge-kernels"
    result = export_hf_kernels([tiny["winners"]["rmsnorm_h64"], tiny["winners"]["silu_and_mul_i128"],
                                tiny["winners"]["fused_add_rmsnorm_h64"]], out, datasets=[tiny["profile"]])
    assert result["variant"] == "torch-cpu" and result["layers"] == ["RMSNorm", "SiluAndMul"]
    assert [name for name, _ in result["skipped"]][0].startswith("fused_add_rmsnorm_h64")
    meta = json.loads((out / "build" / "torch-cpu" / "metadata.json").read_text())
    assert meta["backend"] == {"type": "cpu"} and meta["python-depends"] == []
    return out


def test_the_kernels_library_loads_the_package(package, tiny):
    code = PRELUDE + f"""
from pathlib import Path
from kernels import LocalLayerRepository, Mode, kernelize, use_kernel_mapping
mapping = {{"RMSNorm": {{"cpu": LocalLayerRepository(repo_path=Path({str(package)!r}), layer_name="RMSNorm")}}}}
with use_kernel_mapping(mapping, inherit_mapping=False):
    kernelize(model, mode=Mode.INFERENCE, device="cpu")
""" + EPILOGUE
    got = _run(code, tiny["config"])
    assert got["ops"] == 1  # the package's custom op was made: the numba kernel served the norms
    assert got["forward_module"].endswith(".layers")  # the norm's forward is the package's RMSNorm.forward
    assert got["max_rel"] <= 5e-2


def test_transformers_kernel_config_loads_the_package(package, tiny):
    """transformers' KernelConfig validates the mapping against the model and loads the local
    repository with its own LocalLayerRepository and kernelize. transformers 5.22 refuses the
    device type 'cpu' in `create_compatible_mapping` (KERNELS_SUPPORTED_DEVICE_TYPES has none),
    so on the CPU the compatible mapping it would build is given for 'cpu' here; on a GPU the
    test below runs the unmodified `set_use_kernels` path."""
    code = PRELUDE + f"""
from transformers import KernelConfig
from transformers.integrations import hub_kernels
from kernels import LocalLayerRepository, Mode
from pathlib import Path
kc = KernelConfig(kernel_mapping={{"RMSNorm": "{package}:RMSNorm"}}, use_local_kernel=True)
kc.sanitize_kernel_mapping(model)  # the layer name is registered by the model, the path form is valid
try:
    kc.create_compatible_mapping(model)
    refused = None
except ValueError as exc:
    refused = str(exc)
    repo, layer = "{package}:RMSNorm".split(":")
    kc.kernel_mapping = {{"RMSNorm": {{"cpu": {{Mode.INFERENCE: LocalLayerRepository(repo_path=Path(repo), layer_name=layer)}}}}}}
model.kernel_config = kc
hub_kernels.kernelize(model)
""" + EPILOGUE
    got = _run(code, tiny["config"])
    assert got["ops"] == 1 and got["forward_module"].endswith(".layers")
    assert got["max_rel"] <= 5e-2


@pytest.mark.cuda
def test_kernel_config_set_use_kernels_on_a_gpu(tmp_path):
    """Unverified on this project's CPU machines: a Triton seed winner exported as torch-cuda and
    loaded by `model.set_use_kernels(True, KernelConfig(...))` on a GPU model."""
    from runtime_support import write_tiny_config

    from solforge.knowledge import seeds_for
    from solforge.problems import load_builtin
    from solforge.spec import dump_json

    defn, _ = load_builtin("rmsnorm_h4096")
    winner = tmp_path / "w"
    winner.mkdir()
    (winner / "solution.json").write_text(dump_json(seeds_for(defn, "triton")[0].to_solution(defn)))
    out = tmp_path / "pkg"
    assert export_hf_kernels([winner], out)["variant"] == "torch-cuda"
    config = write_tiny_config(tmp_path, hidden_size=4096, intermediate_size=128, num_attention_heads=32,
                               num_key_value_heads=8, num_hidden_layers=1)
    code = PRELUDE.replace(".eval()", ".eval().cuda()").replace("(2, 16), generator=torch.Generator().manual_seed(0))",
                                                                "(2, 16), generator=torch.Generator().manual_seed(0)).cuda()") + f"""
from transformers import KernelConfig
model.set_use_kernels(True, KernelConfig(kernel_mapping={{"RMSNorm": "{out}:RMSNorm"}}, use_local_kernel=True))
""" + EPILOGUE
    got = _run(code, config)
    assert got["ops"] == 1 and got["max_rel"] <= 5e-2


def test_export_refuses_winners_without_a_layer_family(tiny, tmp_path):
    with pytest.raises(SpecError, match="none of the 1 winner"):
        export_hf_kernels([tiny["winners"]["fused_add_rmsnorm_h64"]], tmp_path / "x", datasets=[tiny["profile"]])
    assert not (tmp_path / "x").exists()
