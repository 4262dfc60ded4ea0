"""The detection API that callers used before `Device`: `detect()`, `DetectedDevice`, `identify()`, `parse_device()`.

Each is now a view of `Device.parse` (so detection runs once per process and device
string); they stay while callers move to `Device`, and go once none is left. Matching
lives in `solforge.hardware.identity`, CPU facts in `solforge.hardware.kinds.cpu`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from solforge.hardware.datasheet import DevicePeaks, DeviceSpec, Peaks, choose_peaks
from solforge.hardware.device import Device, split_device
from solforge.hardware.identity import DeviceIdentity, match_device
from solforge.hardware.kinds.cpu import cpu_last_level_cache_bytes, cpu_name, parse_cache_size

if TYPE_CHECKING:
    from solforge.hardware.ceilings import Ceilings

__all__ = [
    "DetectedDevice",
    "DeviceIdentity",
    "cpu_last_level_cache_bytes",
    "cpu_name",
    "detect",
    "identify",
    "match_device",
    "parse_cache_size",
    "parse_device",
]


@dataclass(frozen=True)
class DetectedDevice:
    """A detected device: what it reports, which datasheet row it matched (and why), its cached ceilings.

    Superseded by `Device`, which offers every field and method here.
    """

    device: str
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

    @property
    def peaks(self) -> DevicePeaks:
        """As `Device.peaks`: both sets of peaks and the one SOL bounds use (`datasheet.choose_peaks`)."""
        return choose_peaks(self.datasheet_peaks(), self.calibrated_peaks())


def detect(device: str = "cuda") -> DetectedDevice:
    """`Device.parse(device)` as a `DetectedDevice`. Raises SpecError as `Device.parse` does."""
    parsed = Device.parse(device)
    return DetectedDevice(
        device=parsed.type, name=parsed.name, spec=parsed.spec, reason=parsed.reason, ceilings=parsed.ceilings,
        l2_bytes=parsed.cache_bytes, sm_count=parsed.sm_count, memory_bytes=parsed.memory_bytes,
        compute_capability=parsed.compute_capability, index=parsed.index,
    )


def identify(device: str) -> DeviceIdentity:
    """What `device` says about itself: `Device.parse(device).identity`; SpecError if it is not there."""
    return Device.parse(device).identity


def parse_device(device: str) -> tuple[str, int]:
    """(kind name, index) of a device string, e.g. ("cuda", 1) for "cuda:1", without detecting; SpecError otherwise."""
    kind, index = split_device(device)
    return kind.name, index
