"""NVML readings: throttle-reason decoding, throttle warnings, and graceful None without NVML."""

from __future__ import annotations

import sys
import types

import pytest

from solforge.hardware.nvml import (
    ClockLockError,
    ClockReading,
    MemoryInterface,
    decode_clock_event_reasons,
    locked_clocks,
    read_clocks,
    read_memory_interface,
    slowdown_reasons,
    throttled,
)


class NVMLError(Exception):
    pass


def fake_pynvml(*, mask: int = 0x1, init_fails: bool = False, power_fails: bool = False,
                event_reasons: bool = True, lock_fails: bool = False) -> types.ModuleType:
    """A stand-in for pynvml that records calls: an H100-like board."""
    module = types.ModuleType("pynvml")
    module.calls = []
    module.NVML_CLOCK_SM, module.NVML_CLOCK_MEM, module.NVML_TEMPERATURE_GPU = 1, 2, 0
    module.NVMLError = NVMLError

    def record(name, result=None, fails=False):
        def fn(*args):
            module.calls.append((name, args))
            if fails:
                raise NVMLError(name)
            return result(*args) if callable(result) else result
        return fn

    module.nvmlInit = record("init", fails=init_fails)
    module.nvmlShutdown = record("shutdown")
    module.nvmlDeviceGetHandleByIndex = record("handle_by_index", lambda i: f"handle{i}")
    module.nvmlDeviceGetHandleByUUID = record("handle_by_uuid", lambda u: f"handle:{u}")
    module.nvmlDeviceGetClockInfo = record("clock", lambda h, kind: {1: 1755, 2: 2619}[kind])
    module.nvmlDeviceGetMaxClockInfo = record("max_clock", lambda h, kind: {1: 1980, 2: 2619}[kind])
    module.nvmlDeviceGetTemperature = record("temperature", 61)
    module.nvmlDeviceGetPowerUsage = record("power", 512_345, fails=power_fails)  # milliwatts
    module.nvmlDeviceGetCurrentClocksThrottleReasons = record("throttle_reasons", mask)
    if event_reasons:
        module.nvmlDeviceGetCurrentClocksEventReasons = record("event_reasons", mask)
    module.nvmlDeviceGetMemoryBusWidth = record("bus_width", 5120)
    module.nvmlDeviceSetGpuLockedClocks = record("lock", fails=lock_fails)
    module.nvmlDeviceResetGpuLockedClocks = record("reset")
    return module


def reading(mask: int, sm_clock_mhz: int = 1980, temperature_c: int = 60) -> ClockReading:
    return ClockReading(sm_clock_mhz=sm_clock_mhz, mem_clock_mhz=2619, max_sm_clock_mhz=1980,
                        temperature_c=temperature_c, power_w=400.0, throttle_mask=mask,
                        throttle_reasons=decode_clock_event_reasons(mask))


def test_decode_throttle_bitmask():
    assert decode_clock_event_reasons(0) == []
    assert decode_clock_event_reasons(0x1) == ["gpu_idle"]
    assert decode_clock_event_reasons(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert decode_clock_event_reasons(0x2 | 0x8 | 0x80) == [
        "applications_clocks_setting", "hw_slowdown", "hw_power_brake_slowdown"]
    assert decode_clock_event_reasons(0x20 | 0x800) == ["sw_thermal_slowdown", "unknown_0x800"]


def test_idle_and_app_clock_settings_are_benign_the_rest_are_slowdowns():
    assert slowdown_reasons(decode_clock_event_reasons(0x1 | 0x2 | 0x10 | 0x100)) == []
    assert slowdown_reasons(decode_clock_event_reasons(0x1 | 0x4)) == ["sw_power_cap"]
    assert slowdown_reasons(["unknown_0x800"]) == ["unknown_0x800"]


def test_throttled_warns_only_on_slowdowns():
    assert throttled(reading(0x1), reading(0x0)) is None
    assert throttled(reading(0x2), reading(0x1)) is None
    warning = throttled(reading(0x0), reading(0x40, sm_clock_mhz=1410, temperature_c=88))
    assert warning is not None and "hw_thermal_slowdown" in warning
    assert "1980 -> 1410 MHz" in warning and "88 C" in warning
    assert "sw_power_cap" in throttled(reading(0x4), reading(0x0))
    assert throttled(None, reading(0x40)) is None


def test_read_clocks_without_nvml_is_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_fails=True))
    assert read_clocks() is None
    assert read_memory_interface() is None
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: import raises
    assert read_clocks() is None


def test_read_clocks_reads_and_converts(monkeypatch):
    nvml = fake_pynvml(mask=0x4 | 0x1)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    clocks = read_clocks(0)
    assert clocks == ClockReading(sm_clock_mhz=1755, mem_clock_mhz=2619, max_sm_clock_mhz=1980, temperature_c=61,
                                  power_w=pytest.approx(512.345), throttle_mask=0x5,
                                  throttle_reasons=["gpu_idle", "sw_power_cap"])
    assert clocks.slowdowns == ["sw_power_cap"]
    assert clocks.as_dict()["throttle_reasons"] == "gpu_idle,sw_power_cap"
    assert ("shutdown", ()) in nvml.calls


def test_read_clocks_by_cuda_uuid(monkeypatch):
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    read_clocks(uuid="58a5f8f3-1111-2222-3333-444455556666")
    assert ("handle_by_uuid", ("GPU-58a5f8f3-1111-2222-3333-444455556666",)) in nvml.calls


def test_a_field_the_board_lacks_is_none_and_old_drivers_use_throttle_reasons(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(mask=0x40, power_fails=True, event_reasons=False))
    clocks = read_clocks()
    assert clocks is not None and clocks.power_w is None
    assert clocks.throttle_reasons == ["hw_thermal_slowdown"]


def test_memory_interface_bandwidth():
    assert MemoryInterface(5120, 2619).bandwidth_gb_s == pytest.approx(3352, rel=1e-3)  # H100 SXM: 3.35 TB/s
    assert MemoryInterface(384, 10501).bandwidth_gb_s == pytest.approx(1008, rel=1e-3)  # RTX 4090


def test_read_memory_interface(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    assert read_memory_interface() == MemoryInterface(bus_width_bits=5120, max_mem_clock_mhz=2619)


def test_locked_clocks_locks_and_always_resets(monkeypatch):
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    with pytest.raises(RuntimeError, match="inside"):
        with locked_clocks(0, 1500):
            assert ("lock", ("handle0", 1500, 1500)) in nvml.calls
            raise RuntimeError("inside")
    assert ("reset", ("handle0",)) in nvml.calls


def test_locked_clocks_refused_or_absent_raises(monkeypatch):
    nvml = fake_pynvml(lock_fails=True)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    with pytest.raises(ClockLockError, match="refused"):
        with locked_clocks(0, 1500):
            pass
    assert not any(name == "reset" for name, _ in nvml.calls)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_fails=True))
    with pytest.raises(ClockLockError, match="not available"):
        with locked_clocks(0, 1500):
            pass
