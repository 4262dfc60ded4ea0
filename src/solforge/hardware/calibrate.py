"""Calibrated ceilings: what this very device reaches on a large copy and a large matmul.

Datasheet peaks are what the vendor promises at boost clock; calibrated ceilings are what
this device, in this machine, at its current power and clock settings, actually reaches.
Both SOLs are reported. Clocks are never locked here.

`calibrate(device)` measures (how is the device kind's business: `DeviceKind.
measure_ceilings`, see `kinds/cpu.py` and `kinds/cuda.py`), records the load it ran
under (`solforge.hardware.load`) and the library versions, and caches the result
(`solforge.hardware.ceilings`: one file per device and torch/triton/numba versions).

A calibration taken under load reads low: other processes had part of the cores or the
memory bus. It is written when nothing clean is cached (a low bound is better than
none, and it says it was under load), but it never replaces a clean calibration unless
the caller forces it: `calibrate` raises `CalibrationRefused` instead.
"""

from __future__ import annotations

from pathlib import Path

from solforge.cache import cache_root
from solforge.hardware.ceilings import Ceilings, cache_path, library_versions, load_cached, write_ceilings
from solforge.hardware.device import Device, resolve_device
from solforge.hardware.load import watch_load
from solforge.spec import SpecError

__all__ = [
    "CalibrationRefused",
    "Ceilings",
    "cache_path",
    "cache_root",
    "calibrate",
    "ceilings_path",
    "load_cached",
    "overwrite_refusal",
]


class CalibrationRefused(SpecError):
    """A calibration taken under load would have replaced a clean one; nothing was written."""


def calibrate(device: str | Device | None = None, force: bool = False) -> Ceilings:
    """Measure the ceilings of `device` (a device string, a `Device`, or None for this machine's default), cache them.

    Always measures (a few seconds on a CPU, under a minute on a GPU) and records the
    load the measurement ran under. The result is written to the device's cache file
    unless it was taken under load while the cached calibration is clean: then
    `CalibrationRefused` (a one-line SpecError) is raised and the clean file is kept,
    unless `force`. Raises SpecError for an unknown device string, a device that is not
    there, or a device kind that cannot be calibrated.
    """
    target = resolve_device(device)
    previous = load_cached(target.identity)  # the file as it is now, not as the Device was parsed
    with watch_load() as watch:
        measured = target.kind.measure_ceilings(target.identity)
    load = watch.reading
    warnings = list(measured.warnings)
    if load is not None and load.under_load:
        warnings.append(f"calibrated {load.summary()}: the ceilings may read low")
    ceilings = measured.model_copy(update={"load": load, "versions": library_versions(), "warnings": warnings})
    path = cache_path(target.identity)
    refusal = overwrite_refusal(previous, ceilings)
    if refusal is not None and not force:
        raise CalibrationRefused(f"calibrate --device {target}: {refusal}; kept {path}; "
                                 "run again on an idle machine, or pass --force to overwrite it")
    write_ceilings(path, ceilings)
    return ceilings


def overwrite_refusal(previous: Ceilings | None, new: Ceilings) -> str | None:
    """Why `new` must not replace `previous` (one phrase), or None when it may.

    Refused only when `new` ran under load and `previous` was measured with its load
    recorded and clean. A previous calibration that was itself under load, or whose load
    is unknown, is replaced.
    """
    if previous is None or previous.load is None or previous.load.under_load:
        return None
    if new.load is None or not new.load.under_load:
        return None
    return (f"measured {new.load.summary()}, while the cached calibration of {previous.measured_at} "
            f"is {previous.load.summary()}")


def ceilings_path(device: str | Device | None = None) -> Path:
    """Where the ceilings of `device` are cached for the installed library versions (the file may not exist yet)."""
    return cache_path(resolve_device(device).identity)
