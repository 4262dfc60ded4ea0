"""The Device protocol: parsed once, kinds as plugins (a toy kind from one file), the one peaks rule."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import toy_device  # registers the 'toy' kind: this file's import is the only registration

from solforge.hardware import (
    Ceilings,
    Device,
    DeviceKind,
    Peaks,
    TimerKind,
    calibrate,
    choose_peaks,
    detect,
    device_kinds,
    forget_devices,
    register_device_kind,
    resolve_device,
)
from solforge.hardware.registry import device_kind
from solforge.spec import SpecError

TOY_FILE = Path(toy_device.__file__)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path))


def test_the_toy_kind_is_parsed_and_carries_its_timer_env_languages_and_memory():
    toy = Device.parse("toy:1")
    assert toy.type == "toy" and toy.index == 1 and str(toy) == "toy:1"
    assert toy.name == "Toy Accelerator 1" and toy.sm_count == 4 and toy.count == 2
    assert toy.timer is TimerKind.perf_counter
    assert toy.languages == ("pytorch",)
    assert toy.torch_device == "cpu"
    assert toy.cache_bytes == toy.l2_bytes == 4 * 2**20
    env = toy.worker_env({"PATH": "/bin", "TRITON_INTERPRET": "0"})
    assert env == {"PATH": "/bin", "SOLFORGE_TOY_DEVICE": "1", "TRITON_INTERPRET": "1"}
    memory = toy.memory()
    assert memory.total_bytes == 256 * 2**20 and memory.free_bytes == 192 * 2**20
    # No datasheet entry: "unknown" to the datasheet, never a guess.
    assert toy.spec is None and toy.datasheet_peaks() is None
    assert "no datasheet peaks" in toy.reason and "not calibrated" in toy.reason
    assert toy.peaks.used is None and toy.peaks.source is None


def test_a_device_is_detected_once_per_process_and_device_string():
    forget_devices()
    toy_device.ToyKind.identified.clear()
    first = Device.parse("toy")
    assert Device.parse("toy:0") is first and Device.parse(" TOY ") is first and resolve_device("toy") is first
    assert detect("toy").name == first.name  # the older view reads the same parse
    assert toy_device.ToyKind.identified == [0]
    Device.parse("toy:1")
    assert toy_device.ToyKind.identified == [0, 1]


def test_a_calibration_written_in_this_process_is_seen_by_the_next_parse():
    before = Device.parse("toy:0")
    assert before.ceilings is None
    ceilings = calibrate("toy:0")
    after = Device.parse("toy:0")
    assert after is not before and after.ceilings == ceilings
    assert before.ceilings is None  # a Device handed out keeps what it was parsed with
    assert after.ceilings_path.is_file() and after.ceilings_path.parts[-3] == "toy"
    assert after.peaks.source == "calibrated" and after.peaks.used == ceilings.peaks()
    assert ceilings.load is not None and set(ceilings.spread) == {"dram_bandwidth_gb_s", "matmul_tflops.float32"}


def test_index_past_the_last_device_and_unknown_strings_are_one_line_errors():
    with pytest.raises(SpecError, match="only 2 toy devices") as info:
        Device.parse("toy:2")
    assert "\n" not in str(info.value)
    for bad in ("tpu", "cpu:0", "toy:x", "", "cuda:-1"):
        with pytest.raises(SpecError, match=r"expected 'cuda', 'cuda:N', 'cpu', .*'toy:N'") as info:
            Device.parse(bad)
        assert str(info.value).startswith(f"device '{bad}': ")


def test_kinds_are_ordered_by_priority_and_the_default_device_is_not_the_toy():
    names = [kind.name for kind in device_kinds()]
    assert names.index("cuda") < names.index("cpu") < names.index("toy")
    default = resolve_device(None)
    assert default.type == ("cuda" if device_kind("cuda").count() > 0 else "cpu")
    assert resolve_device(default) is default


def test_the_built_in_kinds_own_their_rules():
    cpu = Device.parse("cpu")
    assert cpu.timer is TimerKind.perf_counter and cpu.languages == ("numba", "pytorch") and cpu.count == 1
    assert cpu.worker_env({"HOME": "/h"}) == {"HOME": "/h", "TRITON_INTERPRET": "1"}
    assert cpu.torch_device == "cpu" and cpu.sm_count == len(os.sched_getaffinity(0))
    memory = cpu.memory()
    assert 0 < memory.free_bytes <= memory.total_bytes
    cuda = device_kind("cuda")
    assert cuda.timer is TimerKind.cuda_events and cuda.languages == ("triton", "pytorch", "cuda")
    assert cuda.env == {"TRITON_INTERPRET": None} and cuda.torch_device(1) == "cuda:1"


def test_a_device_pickles_as_its_string():
    toy = Device.parse("toy:1")
    assert pickle.loads(pickle.dumps(toy)) is toy


def test_registering_a_second_kind_under_a_taken_name_is_refused():
    class Impostor(DeviceKind):
        name = "toy"
        timer = TimerKind.perf_counter
        languages = ("pytorch",)

        def count(self) -> int:
            return 1

        def identify(self, index):
            raise AssertionError("never identified")

        def memory(self, index):
            raise AssertionError("never asked")

    with pytest.raises(ValueError, match="already registered"):
        register_device_kind(Impostor)
    Impostor.name = "Bad Name"
    with pytest.raises(ValueError, match="name must match"):
        register_device_kind(Impostor)
    assert type(device_kind("toy")) is toy_device.ToyKind


def test_a_kind_without_its_own_calibration_refuses_to_guess():
    class Bare(DeviceKind):  # not registered: it only shows the base class's default
        name = "bare"
        timer = TimerKind.perf_counter
        languages = ("pytorch",)

        def count(self) -> int:
            return 1

        def identify(self, index):
            return Device.parse("toy:0").identity

        def memory(self, index):
            raise AssertionError("never asked")

    bare = Bare()
    with pytest.raises(SpecError, match="device 'bare': this device kind cannot be calibrated"):
        bare.measure_ceilings(bare.identify(0))
    assert bare.match(bare.identify(0))[0] is None


def test_a_plugin_file_named_in_the_environment_registers_its_kind_in_a_fresh_process(tmp_path):
    code = ("from solforge.hardware import Device; d = Device.parse('toy:1'); "
            "print(d.name, d.timer.value, d.torch_device, d.worker_env({})['SOLFORGE_TOY_DEVICE'])")
    env = {**os.environ, "SOLFORGE_PLUGINS": str(TOY_FILE), "SOLFORGE_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Toy Accelerator 1 perf_counter cpu 1"
    env["SOLFORGE_PLUGINS"] = str(tmp_path / "missing.py")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "$SOLFORGE_PLUGINS" in done.stderr and "no such file" in done.stderr


PEAKS_D = Peaks({"bfloat16": 989.0}, 67.0, 3350.0, "datasheet")
PEAKS_C = Peaks({"bfloat16": 700.0}, 50.0, 3000.0, "calibrated")


def test_calibrated_else_datasheet_is_decided_in_one_place():
    both = choose_peaks(PEAKS_D, PEAKS_C, calibration_note="taken under load")
    assert both.used is PEAKS_C and both.source == "calibrated" and "taken under load" in both.reason
    assert both.datasheet is PEAKS_D and both.calibrated is PEAKS_C
    only_datasheet = choose_peaks(PEAKS_D, None)
    assert only_datasheet.used is PEAKS_D and "not calibrated" in only_datasheet.reason
    neither = choose_peaks(None, None)
    assert neither.used is None and neither.source is None and "no SOL bound" in neither.reason


def test_device_peaks_say_when_the_calibration_was_under_load(tmp_path):
    from solforge.hardware.ceilings import write_ceilings
    from solforge.hardware.load import LoadReading

    toy = Device.parse("toy:0")
    loaded = Ceilings(device="toy", device_name=toy.name, sm_count=toy.sm_count, dram_bandwidth_gb_s=5.0,
                      matmul_tflops={"float32": 0.1}, simt_tflops=0.1, measured_at="then", torch_version="x",
                      versions=dict(toy_device.library_versions()),
                      load=LoadReading(cpus=2, wall_s=1.0, other_cpu_fraction=0.5, under_load=True))
    write_ceilings(toy.ceilings_path, loaded)
    again = Device.parse("toy:0")
    assert again.ceilings == loaded
    assert "taken under load" in again.peaks.reason and "taken under load" in again.reason


def test_host_memory_reads_memavailable_and_a_cgroup_limit(tmp_path):
    from solforge.hardware.kinds.cpu import host_memory, physical_memory_bytes

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683584 kB\nMemAvailable:    1048576 kB\n")
    free_only = host_memory(meminfo, tmp_path / "no-cgroup")
    assert free_only.free_bytes == 2**30 and free_only.total_bytes == physical_memory_bytes()
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{512 * 2**20}\n")
    (cgroup / "memory.current").write_text(f"{400 * 2**20}\n")
    limited = host_memory(meminfo, cgroup)
    assert limited.total_bytes == 512 * 2**20 and limited.free_bytes == 112 * 2**20
    (cgroup / "memory.max").write_text("max\n")
    assert host_memory(meminfo, cgroup) == free_only
