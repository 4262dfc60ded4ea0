"""Which device is this, and which datasheet row (if any) is it?

Matching goes by what the device measurably is — compute capability, SM count, memory
size, and (through NVML, where available) its memory interface — and uses the reported
name only to break a tie. Names mislead: the H100 SXM reports itself as
'NVIDIA H100 80GB HBM3', which at least one peer tool maps to PCIe peaks. A device that
matches no row, or more than one, gets no datasheet peaks and says why; it is never
given a guess.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from solforge.hardware.datasheet import DEVICES, DeviceSpec, Peaks
from solforge.hardware.nvml import MemoryInterface
from solforge.spec import SpecError

if TYPE_CHECKING:
    from solforge.hardware.calibrate import Ceilings

CPU_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")

# A memory interface picks one candidate when its bandwidth is within this fraction of
# that candidate's datasheet figure and the runner-up is at least twice as far off
# (A100 SXM 2039 GB/s vs A100 PCIe 1935 GB/s are 5% apart).
_BANDWIDTH_MATCH = 0.04


@dataclass(frozen=True)
class DeviceIdentity:
    """What a device says about itself, read without measuring anything.

    `sm_count` is SMs (or AMD compute units) on CUDA and logical CPUs available to this
    process on CPU. `l2_bytes` is the L2 on CUDA (as torch reports it) and the largest
    CPU cache level on CPU. `uuid` is the CUDA device UUID, for NVML.
    """

    device: Literal["cuda", "cpu"]
    index: int
    name: str
    compute_capability: tuple[int, int] | None
    sm_count: int
    memory_bytes: int | None
    l2_bytes: int | None
    uuid: str | None = None


@dataclass(frozen=True)
class DetectedDevice:
    """A detected device: what it reports, which datasheet row it matched (and why), its cached ceilings."""

    device: Literal["cuda", "cpu"]
    name: str
    spec: DeviceSpec | None
    reason: str
    ceilings: Ceilings | None
    l2_bytes: int | None
    sm_count: int | None
    memory_bytes: int | None
    compute_capability: tuple[int, int] | None = None
    index: int = 0

    def datasheet_peaks(self) -> Peaks | None:
        """The matched datasheet row's peaks; None for the CPU and for an unknown device."""
        return self.spec.peaks() if self.spec is not None else None

    def calibrated_peaks(self) -> Peaks | None:
        """Peaks from the cached calibration; None until `solforge calibrate` has run on this device."""
        return self.ceilings.peaks() if self.ceilings is not None else None


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


def detect(device: str = "cuda") -> DetectedDevice:
    """Detect `device` ("cuda", "cuda:N" or "cpu"), match it to the datasheet, load its cached ceilings.

    CUDA properties come from `torch.cuda.get_device_properties`; the memory interface
    from NVML where available. The CPU has no datasheet row: `spec` is None and only
    calibrated ceilings apply. Raises SpecError for an unknown device string or a CUDA
    request on a machine without CUDA.
    """
    from solforge.hardware.calibrate import cache_path, load_cached

    identity = identify(device)
    if identity.device == "cuda":
        from solforge.hardware.nvml import read_memory_interface

        assert identity.compute_capability is not None and identity.memory_bytes is not None
        spec, reason = match_device(
            identity.name, identity.compute_capability, identity.sm_count, identity.memory_bytes,
            memory_interface=read_memory_interface(uuid=identity.uuid),
        )
    else:
        spec, reason = None, f"CPU '{identity.name}': no datasheet peaks, only calibrated ceilings"
    ceilings = load_cached(identity)
    if ceilings is None:
        reason += "; not calibrated yet (run `solforge calibrate`)"
    else:
        reason += f"; calibrated ceilings from {cache_path(identity)}"
    return DetectedDevice(
        device=identity.device, name=identity.name, spec=spec, reason=reason, ceilings=ceilings,
        l2_bytes=identity.l2_bytes, sm_count=identity.sm_count, memory_bytes=identity.memory_bytes,
        compute_capability=identity.compute_capability, index=identity.index,
    )


def identify(device: str) -> DeviceIdentity:
    """Read the identity of `device` ("cuda", "cuda:N" or "cpu") without measuring; SpecError if it is not there."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return DeviceIdentity(
            device="cpu", index=0, name=cpu_name(), compute_capability=None, sm_count=_cpu_count(),
            memory_bytes=_physical_memory_bytes(), l2_bytes=cpu_last_level_cache_bytes(),
        )
    import torch

    if not torch.cuda.is_available():
        raise SpecError(f"device '{device}': no CUDA device is available here; use --device cpu")
    if index >= torch.cuda.device_count():
        raise SpecError(f"device '{device}': only {torch.cuda.device_count()} CUDA device(s) are visible")
    props = torch.cuda.get_device_properties(index)
    uuid = getattr(props, "uuid", None)
    return DeviceIdentity(
        device="cuda", index=index, name=props.name, compute_capability=(props.major, props.minor),
        sm_count=props.multi_processor_count, memory_bytes=props.total_memory,
        l2_bytes=getattr(props, "L2_cache_size", None) or None, uuid=str(uuid) if uuid else None,
    )


def parse_device(device: str) -> tuple[Literal["cuda", "cpu"], int]:
    """("cuda", N) for "cuda" / "cuda:N", ("cpu", 0) for "cpu"; SpecError for anything else."""
    match = re.fullmatch(r"(cuda|cpu)(?::(\d+))?", device.strip())
    if match is None or (match.group(1) == "cpu" and match.group(2)):
        raise SpecError(f"device '{device}': expected 'cuda', 'cuda:N' or 'cpu'")
    kind: Literal["cuda", "cpu"] = "cuda" if match.group(1) == "cuda" else "cpu"
    return kind, int(match.group(2) or 0)


def parse_cache_size(text: str) -> int:
    """Bytes of a sysfs cache size such as '48K', '2048K', '32M' or '1024'; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)\s*", text, flags=re.IGNORECASE)
    if match is None:
        raise ValueError(f"not a cache size: {text!r}")
    return int(match.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2).upper()]


def cpu_last_level_cache_bytes(cache_dir: Path = CPU_CACHE_DIR) -> int | None:
    """The largest data (or unified) cache of cpu0, in bytes, from sysfs `index*/size`; None where unreadable.

    On most servers this is the L3 shared by the whole socket (or the VM's host socket).
    """
    sizes = []
    for index in sorted(cache_dir.glob("index*")):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            sizes.append(parse_cache_size((index / "size").read_text()))
        except (OSError, ValueError):
            continue
    return max(sizes) if sizes else None


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo, else what `platform` knows, else 'cpu'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


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
