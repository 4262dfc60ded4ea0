"""The hardware a kernel runs on: datasheet peaks, device detection, calibrated ceilings, NVML readings.

- `datasheet`: `DeviceSpec` rows (dense figures, each with its source) and `Peaks`.
- `detect`: `detect(device) -> DetectedDevice`, matching on measurable properties
  (`match_device`), never on the name alone.
- `calibrate`: `calibrate(device, force) -> Ceilings`, what this device reaches, cached.
- `nvml`: clocks, temperature, power and throttle reasons; opt-in clock locking.

torch and pynvml are imported inside the functions that need them, so importing this
package stays fast and works on a machine without a GPU.
"""

from __future__ import annotations

from solforge.hardware.calibrate import Ceilings, cache_root, calibrate, ceilings_path
from solforge.hardware.datasheet import DEVICES, DeviceSpec, Peaks, spec_by_key
from solforge.hardware.detect import DetectedDevice, DeviceIdentity, detect, identify, match_device
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

__all__ = [
    "DEVICES",
    "Ceilings",
    "ClockLockError",
    "ClockReading",
    "DetectedDevice",
    "DeviceIdentity",
    "DeviceSpec",
    "MemoryInterface",
    "Peaks",
    "cache_root",
    "calibrate",
    "ceilings_path",
    "decode_clock_event_reasons",
    "detect",
    "identify",
    "locked_clocks",
    "match_device",
    "read_clocks",
    "read_memory_interface",
    "spec_by_key",
    "throttled",
]
