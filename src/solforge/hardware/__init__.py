"""The hardware a kernel runs on: the `Device`, its kinds, datasheet peaks, calibrated ceilings, NVML readings.

- `device`: `Device.parse("cpu" | "cuda" | "cuda:N")` / `resolve_device(None)`, parsed
  once per process: kind, identity, peaks (`Device.peaks`: which bound is used and why),
  timer, worker environment, default languages, count, cache size, memory.
- `registry`: `DeviceKind` (one plugin per kind), `register_device_kind`, `TimerKind`;
  the built-in kinds are `kinds/cpu.py` and `kinds/cuda.py`.
- `datasheet`: `DeviceSpec` rows (dense figures, each with its source), `Peaks`, and
  `choose_peaks`, the one rule for which peaks a SOL bound uses.
- `identity`: `DeviceIdentity`, and `match_device` by measurable properties, never by
  the name alone.
- `calibrate`: `calibrate(device, force) -> Ceilings`, measured under a load watch and
  cached per device and library versions (`ceilings`, `load`, `measure`).
- `nvml`: clocks, temperature, power and throttle reasons; opt-in clock locking.
- `detect`: the older `detect() -> DetectedDevice` view, kept while callers move to `Device`.

torch and pynvml are imported inside the functions that need them, so importing this
package stays fast and works on a machine without a GPU.
"""

from __future__ import annotations

from solforge.hardware.calibrate import CalibrationRefused, calibrate, ceilings_path, overwrite_refusal
from solforge.hardware.ceilings import Ceilings, cache_root, library_versions
from solforge.hardware.datasheet import DEVICES, DevicePeaks, DeviceSpec, Peaks, choose_peaks, spec_by_key
from solforge.hardware.detect import DetectedDevice, detect, identify
from solforge.hardware.device import Device, forget_devices, resolve_device
from solforge.hardware.identity import DeviceIdentity, match_device
from solforge.hardware.load import LoadReading
from solforge.hardware.measure import Spread
from solforge.hardware.nvml import (
    ClockLockError,
    ClockReading,
    MemoryInterface,
    decode_clock_event_reasons,
    locked_clocks,
    read_clocks,
    read_memory_interface,
    throttled,
)
from solforge.hardware.registry import DeviceKind, DeviceMemory, TimerKind, device_kinds, register_device_kind

__all__ = [
    "DEVICES",
    "CalibrationRefused",
    "Ceilings",
    "ClockLockError",
    "ClockReading",
    "DetectedDevice",
    "Device",
    "DeviceIdentity",
    "DeviceKind",
    "DeviceMemory",
    "DevicePeaks",
    "DeviceSpec",
    "LoadReading",
    "MemoryInterface",
    "Peaks",
    "Spread",
    "TimerKind",
    "cache_root",
    "calibrate",
    "ceilings_path",
    "choose_peaks",
    "decode_clock_event_reasons",
    "detect",
    "device_kinds",
    "forget_devices",
    "identify",
    "library_versions",
    "locked_clocks",
    "match_device",
    "overwrite_refusal",
    "read_clocks",
    "read_memory_interface",
    "register_device_kind",
    "resolve_device",
    "spec_by_key",
    "throttled",
]
