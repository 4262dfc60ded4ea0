"""NVML readings: clocks, temperature, power, and why the GPU is holding its clocks down.

Uses the `pynvml` module of the nvidia-ml-py package, imported inside the functions. NVML
that is absent (no package, no driver, not an NVIDIA GPU) or that fails gives None — a
reading is evidence beside a measurement, never a reason for the measurement to fail.
A field that one board does not support (power on some PCIe cards) is None on its own.

Clock locking (`locked_clocks`) exists as an option and is never used by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# The clocks-event (formerly "clocks throttle") reason bits of nvml.h, each with whether it
# is benign. Source: NVML API Reference, "Clocks Event Reasons" (nvmlClocksEventReason*,
# nvmlClocksThrottleReason* for BoardLimit and Reliability).
CLOCK_EVENT_REASONS: dict[int, tuple[str, bool]] = {
    0x001: ("gpu_idle", True),                      # nothing to run: clocks drop, no kernel slowed
    0x002: ("applications_clocks_setting", True),   # clocks held at the configured application clocks
    0x004: ("sw_power_cap", False),                 # the power limit lowered the clocks
    0x008: ("hw_slowdown", False),                  # hardware slowdown (thermal or power brake)
    0x010: ("sync_boost", True),                    # boost aligned with other GPUs of a sync group
    0x020: ("sw_thermal_slowdown", False),          # the driver slowed the GPU for temperature
    0x040: ("hw_thermal_slowdown", False),          # the hardware slowed the GPU for temperature
    0x080: ("hw_power_brake_slowdown", False),      # an external power brake (e.g. the PSU) asserted
    0x100: ("display_clock_setting", True),         # clocks held by the display clock setting
    0x200: ("board_limit", False),                  # a board-level limit
    0x400: ("reliability", False),                  # a reliability limit
}


def decode_clock_event_reasons(mask: int) -> list[str]:
    """Names of the bits set in an NVML clocks-event (throttle-reason) bitmask, lowest bit first.

    A bit this table does not know is named `unknown_0x...`; see CLOCK_EVENT_REASONS for
    the names and their source.
    """
    names = [name for bit, (name, _) in CLOCK_EVENT_REASONS.items() if mask & bit]
    known = sum(CLOCK_EVENT_REASONS)
    unknown = mask & ~known
    bit = 1
    while unknown:
        if unknown & bit:
            names.append(f"unknown_{bit:#x}")
            unknown &= ~bit
        bit <<= 1
    return names


def slowdown_reasons(names: list[str]) -> list[str]:
    """The reasons among `names` that slow a kernel down (power, thermal, hardware); unknown bits count as slowdowns."""
    benign = {name for name, ok in CLOCK_EVENT_REASONS.values() if ok}
    return [name for name in names if name not in benign]


@dataclass(frozen=True)
class ClockReading:
    """One NVML reading of a GPU. Clocks in MHz, temperature in degrees C, power in W."""

    sm_clock_mhz: int | None
    mem_clock_mhz: int | None
    max_sm_clock_mhz: int | None
    temperature_c: int | None
    power_w: float | None
    throttle_mask: int | None
    throttle_reasons: list[str]

    @property
    def slowdowns(self) -> list[str]:
        """The throttle reasons that slow kernels down (not idle or application-clock settings)."""
        return slowdown_reasons(self.throttle_reasons)

    def as_dict(self) -> dict[str, float | int | str | None]:
        """Flat form for `EvaluationExtension.clocks`; reasons joined with commas."""
        return {
            "sm_clock_mhz": self.sm_clock_mhz,
            "mem_clock_mhz": self.mem_clock_mhz,
            "max_sm_clock_mhz": self.max_sm_clock_mhz,
            "temperature_c": self.temperature_c,
            "power_w": self.power_w,
            "throttle_reasons": ",".join(self.throttle_reasons),
        }


@dataclass(frozen=True)
class MemoryInterface:
    """The DRAM interface NVML reports: bus width in bits, maximum memory clock in MHz."""

    bus_width_bits: int
    max_mem_clock_mhz: int

    @property
    def bandwidth_gb_s(self) -> float:
        """Theoretical DRAM bandwidth, GB/s: bus bytes x max memory clock x 2 transfers per clock.

        NVML reports the memory clock so that double data rate gives the datasheet figure
        (H100 SXM: 5120 bit / 8 x 2619 MHz x 2 = 3352 GB/s against 3.35 TB/s; RTX 4090:
        384 / 8 x 10501 x 2 = 1008 GB/s).
        """
        return self.bus_width_bits / 8 * self.max_mem_clock_mhz * 1e6 * 2 / 1e9


def read_clocks(device_index: int = 0, uuid: str | None = None) -> ClockReading | None:
    """Read SM and memory clocks, the max SM clock, temperature, power and clocks-event reasons.

    `device_index` is NVML's index (PCI bus order, which can differ from CUDA's); pass the
    device's `uuid` (as `torch.cuda.get_device_properties(i).uuid` gives it) to address
    the same GPU as CUDA does. Returns None where NVML is absent or fails; a single field
    the board does not support is None.
    """
    with _session() as pynvml:
        if pynvml is None:
            return None
        handle = _handle(pynvml, device_index, uuid)
        if handle is None:
            return None
        mask = _try(lambda: _clock_event_mask(pynvml, handle))
        power_mw = _try(lambda: pynvml.nvmlDeviceGetPowerUsage(handle))
        return ClockReading(
            sm_clock_mhz=_try(lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)),
            mem_clock_mhz=_try(lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)),
            max_sm_clock_mhz=_try(lambda: pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)),
            temperature_c=_try(lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
            power_w=None if power_mw is None else power_mw / 1000.0,  # NVML reports milliwatts
            throttle_mask=mask,
            throttle_reasons=[] if mask is None else decode_clock_event_reasons(mask),
        )


def read_memory_interface(device_index: int = 0, uuid: str | None = None) -> MemoryInterface | None:
    """The memory bus width and maximum memory clock NVML reports, or None where NVML cannot tell."""
    with _session() as pynvml:
        if pynvml is None:
            return None
        handle = _handle(pynvml, device_index, uuid)
        if handle is None:
            return None
        width = _try(lambda: pynvml.nvmlDeviceGetMemoryBusWidth(handle))
        clock = _try(lambda: pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM))
        if not width or not clock:
            return None
        return MemoryInterface(bus_width_bits=int(width), max_mem_clock_mhz=int(clock))


def throttled(before: ClockReading | None, after: ClockReading | None) -> str | None:
    """A one-line warning if either reading shows a slowdown (power, thermal, hardware), else None.

    Idle, application-clock, display-clock and sync-boost reasons are benign. Missing
    readings give None: no evidence either way.
    """
    if before is None or after is None:
        return None
    reasons = list(dict.fromkeys(before.slowdowns + after.slowdowns))
    if not reasons:
        return None
    details = [f"SM clock {_mhz(before.sm_clock_mhz)} -> {_mhz(after.sm_clock_mhz)} MHz"]
    if after.max_sm_clock_mhz is not None:
        details.append(f"max {after.max_sm_clock_mhz} MHz")
    if after.temperature_c is not None:
        details.append(f"{after.temperature_c} C")
    if after.power_w is not None:
        details.append(f"{after.power_w:.0f} W")
    return f"GPU throttled during measurement ({', '.join(reasons)}): {', '.join(details)}"


class ClockLockError(RuntimeError):
    """NVML could not lock (or is absent): the clocks were left as they were."""


@contextlib.contextmanager
def locked_clocks(device_index: int, sm_mhz: int) -> Iterator[None]:
    """Lock the GPU's SM clock at `sm_mhz` MHz inside the block; reset the lock on exit.

    Opt-in only; nothing in solforge calls it by default. Never use it on a shared machine:
    the lock holds for every process on that GPU until reset, and a crash between lock
    and reset leaves it locked. Needs root (or the driver's unrestricted-clocks setting).
    Raises ClockLockError when NVML is absent or refuses the lock.
    Source: NVML API Reference, nvmlDeviceSetGpuLockedClocks / nvmlDeviceResetGpuLockedClocks.
    """
    with _session() as pynvml:
        if pynvml is None:
            raise ClockLockError("NVML is not available: cannot lock GPU clocks")
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            pynvml.nvmlDeviceSetGpuLockedClocks(handle, sm_mhz, sm_mhz)
        except Exception as exc:  # pynvml.NVMLError and ctypes failures alike
            raise ClockLockError(f"NVML refused to lock GPU {device_index} at {sm_mhz} MHz: {exc}") from exc
        try:
            yield
        finally:
            pynvml.nvmlDeviceResetGpuLockedClocks(handle)


# ---- internals ------------------------------------------------------------------------


@contextlib.contextmanager
def _session() -> Iterator[Any]:
    """Yield the initialised pynvml module, or None where NVML is absent or fails to start."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...
        yield None
        return
    try:
        yield pynvml
    finally:
        _try(pynvml.nvmlShutdown)


def _handle(pynvml: Any, device_index: int, uuid: str | None) -> Any:
    if uuid:
        nvml_uuid = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        return _try(lambda: pynvml.nvmlDeviceGetHandleByUUID(nvml_uuid))
    return _try(lambda: pynvml.nvmlDeviceGetHandleByIndex(device_index))


def _clock_event_mask(pynvml: Any, handle: Any) -> int:
    # Drivers before r535 only know the older name of the same call.
    if hasattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons"):
        try:
            return int(pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle))
        except Exception:
            pass
    return int(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle))


def _try(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None


def _mhz(value: int | None) -> str:
    return "?" if value is None else str(value)
