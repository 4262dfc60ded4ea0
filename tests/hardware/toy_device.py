"""A toy device kind, registered from this one file: a new kind touches no other file.

'toy' / 'toy:N' are two pretend accelerators that run on the host: tensors live on the
torch 'cpu' device, the judge times calls with perf_counter, and a worker gets
SOLFORGE_TOY_DEVICE=1 (and Triton's interpreter, since there is no GPU behind it). Its
calibration measures the host at toy sizes, through the same load watch, cache and
refusal as the real kinds. Load it in another process with
`SOLFORGE_PLUGINS=tests/hardware/toy_device.py`.
"""

from __future__ import annotations

from datetime import datetime, timezone

from solforge.hardware import Ceilings, DeviceIdentity, DeviceKind, DeviceMemory, TimerKind, register_device_kind
from solforge.hardware.ceilings import library_versions
from solforge.hardware.measure import perf_counter_round, timed_rounds
from solforge.spec import SpecError

MiB = 2**20
COPY_BYTES = 32 * MiB
MATMUL_SIZE = 256


@register_device_kind
class ToyKind(DeviceKind):
    """Two pretend accelerators on the host."""

    name = "toy"
    indexed = True
    priority = -10  # never the default device
    timer = TimerKind.perf_counter
    languages = ("pytorch",)
    env = {"SOLFORGE_TOY_DEVICE": "1", "TRITON_INTERPRET": "1"}

    identified: list[int] = []  # every identify() call, so that a test can count detections

    def count(self) -> int:
        return 2

    def identify(self, index: int) -> DeviceIdentity:
        if index >= self.count():
            raise SpecError(f"device 'toy:{index}': only {self.count()} toy devices are visible")
        ToyKind.identified.append(index)
        return DeviceIdentity(kind="toy", index=index, name=f"Toy Accelerator {index}", compute_capability=None,
                              sm_count=4, memory_bytes=256 * MiB, cache_bytes=4 * MiB)

    def memory(self, index: int) -> DeviceMemory:
        return DeviceMemory(total_bytes=256 * MiB, free_bytes=192 * MiB)

    def torch_device(self, index: int) -> str:
        return "cpu"

    def measure_ceilings(self, identity: DeviceIdentity) -> Ceilings:
        import torch

        src = torch.ones(COPY_BYTES // 4, dtype=torch.float32)
        dst = torch.empty_like(src)
        copy_ms, copy_spread = timed_rounds(lambda: perf_counter_round(dst.copy_, src, repeats=5), attempts=2)
        x = torch.randn(MATMUL_SIZE, MATMUL_SIZE)  # (n, n)
        mm_ms, mm_spread = timed_rounds(lambda: perf_counter_round(torch.mm, x, x, repeats=5), attempts=2)
        tflops = 2 * MATMUL_SIZE**3 / (min(mm_ms) * 1e-3) / 1e12
        return Ceilings(
            device="toy", device_name=identity.name, sm_count=identity.sm_count,
            dram_bandwidth_gb_s=2 * COPY_BYTES / (min(copy_ms) * 1e-3) / 1e9,  # read + written
            matmul_tflops={"float32": tflops}, simt_tflops=tflops,
            samples_ms={"dram_bandwidth_gb_s": copy_ms, "matmul_tflops.float32": mm_ms},
            spread={"dram_bandwidth_gb_s": copy_spread, "matmul_tflops.float32": mm_spread},
            versions=library_versions(), measured_at=datetime.now(timezone.utc).isoformat(),
            torch_version=torch.__version__,
        )
