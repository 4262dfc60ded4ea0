"""Which device is this, and which datasheet row (if any) is it?

`DeviceIdentity` is what a device says about itself without measuring anything. Matching
(`match_device`) goes by what a GPU measurably is — compute capability, SM count, memory
size, and (through NVML, where available) its memory interface — and uses the reported
name only to break a tie. Names mislead: the H100 SXM reports itself as
'NVIDIA H100 80GB HBM3', which at least one peer tool maps to PCIe peaks. A device that
matches no row, or more than one, gets no datasheet peaks and says why; it is never
given a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from solforge.hardware.datasheet import DEVICES, DeviceSpec
from solforge.hardware.nvml import MemoryInterface

# A memory interface picks one candidate when its bandwidth is within this fraction of
# that candidate's datasheet figure and the runner-up is at least twice as far off
# (A100 SXM 2039 GB/s vs A100 PCIe 1935 GB/s are 5% apart).
_BANDWIDTH_MATCH = 0.04


@dataclass(frozen=True)
class DeviceIdentity:
    """What a device says about itself, read without measuring anything.

    `kind` is the device kind's name ("cpu", "cuda"). `sm_count` is SMs (or AMD compute
    units) on CUDA and logical CPUs available to this process on the CPU. `cache_bytes`
    is the cache a timing flush must overwrite: the L2 on CUDA (as torch reports it),
    the largest cache level on the CPU. `memory_bytes` is the total memory. `uuid` is
    the CUDA device UUID, for NVML. Sizes in bytes; None where the device does not say.
    """

    kind: str
    index: int
    name: str
    compute_capability: tuple[int, int] | None
    sm_count: int
    memory_bytes: int | None
    cache_bytes: int | None
    uuid: str | None = None

    @property
    def l2_bytes(self) -> int | None:
        """`cache_bytes`, under the name older callers read."""
        return self.cache_bytes


def match_device(
    name: str,
    compute_capability: tuple[int, int],
    sm_count: int,
    memory_bytes: int,
    *,
    memory_interface: MemoryInterface | None = None,
    devices: tuple[DeviceSpec, ...] = DEVICES,
) -> tuple[DeviceSpec | None, str]:
    """The datasheet row of a device with these properties, and how it matched (or why nothing did).

    A row is a candidate when its compute capability and SM count are equal and the
    reported memory fits its nominal size (`DeviceSpec.memory_fits`). Several candidates
    are narrowed by the NVML memory interface (theoretical bandwidth nearest the
    datasheet's), then by an exact reported name; if that leaves several, the answer is
    None ("ambiguous"). The name never overrides the properties. `memory_bytes` as
    `torch.cuda.get_device_properties(i).total_memory` gives it.
    """
    described = _describe(name, compute_capability, sm_count, memory_bytes)
    candidates = [
        spec for spec in devices
        if spec.compute_capability == tuple(compute_capability)
        and spec.sm_count == sm_count
        and spec.memory_fits(memory_bytes)
    ]
    if not candidates:
        return None, (f"unknown device {described}: no datasheet peaks; "
                      "run `solforge calibrate` for measured ceilings")
    how = [f"sm_{compute_capability[0]}{compute_capability[1]}, {sm_count} SMs, "
           f"{memory_bytes / 2**30:.0f} GiB"]
    if len(candidates) > 1 and memory_interface is not None:
        narrowed = _nearest_bandwidth(candidates, memory_interface.bandwidth_gb_s)
        if narrowed is not None:
            candidates = [narrowed]
            how.append(f"memory interface {memory_interface.bandwidth_gb_s:,.0f} GB/s")
    if len(candidates) > 1:
        by_name = [spec for spec in candidates if _known_name(spec, name)]
        if len(by_name) == 1:
            candidates = by_name
            how.append("reported name")
    if len(candidates) > 1:
        keys = ", ".join(spec.name for spec in candidates)
        return None, (f"ambiguous device {described}: matches {keys}; no datasheet peaks; "
                      "run `solforge calibrate` for measured ceilings")
    spec = candidates[0]
    reason = f"matched {spec.name} by {'; '.join(how)}"
    if not _known_name(spec, name):
        reason += (f"; note: '{name}' is not a name {spec.name} is known to report "
                   "(peaks assume the properties, not the name)")
    return spec, reason


def _describe(name: str, cc: tuple[int, int], sm_count: int, memory_bytes: int) -> str:
    return f"'{name}' (sm_{cc[0]}{cc[1]}, {sm_count} SMs, {memory_bytes / 2**30:.0f} GiB)"


def _known_name(spec: DeviceSpec, name: str) -> bool:
    return name.strip().lower() in {known.lower() for known in spec.reported_names}


def _nearest_bandwidth(candidates: list[DeviceSpec], bandwidth_gb_s: float) -> DeviceSpec | None:
    off = sorted((abs(spec.dram_bandwidth_gb_s - bandwidth_gb_s) / spec.dram_bandwidth_gb_s, i)
                 for i, spec in enumerate(candidates))
    (best, i), runner_up = off[0], off[1][0]
    if best <= _BANDWIDTH_MATCH and runner_up >= 2 * best and runner_up > _BANDWIDTH_MATCH:
        return candidates[i]
    return None
