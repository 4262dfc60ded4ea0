"""Calibrated ceilings as data, and their cache: one JSON file per device and library versions.

The cache key is the device (kind, name slug, SM or CPU count) and the versions of the
libraries a kernel's speed depends on (torch, triton, numba): a calibration measured
with torch 2.13 is not used with torch 2.14. The file lives at

    <cache root>/ceilings/<kind>/<slug of name>-<N>/torch-<v>_triton-<v>_numba-<v>.json

the cache root being `solforge.cache.cache_root()` (`$SOLFORGE_CACHE_DIR`, else the
per-user cache dir). A file that is absent, unreadable, another device's or another
versions' is not used (a stale cache is measured again, never an error).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from solforge.cache import cache_root
from solforge.hardware.datasheet import Peaks
from solforge.hardware.identity import DeviceIdentity
from solforge.hardware.load import LoadReading
from solforge.hardware.measure import Spread

KEYED_LIBRARIES = ("torch", "triton", "numba")


class Ceilings(BaseModel):
    """The ceilings one device reached when calibrated. Every raw sample is kept."""

    device: str = Field(min_length=1, description="The device kind's name ('cpu', 'cuda').")
    device_name: str = Field(min_length=1, description="As the device reports it.")
    sm_count: int = Field(gt=0, description="SMs / compute units (CUDA) or logical CPUs (CPU): part of the cache key.")
    dram_bandwidth_gb_s: float = Field(gt=0, description="Copy (CUDA) or STREAM triad (CPU) bandwidth, 10^9 bytes/s.")
    matmul_tflops: dict[str, float] = Field(description="Large-matmul TFLOP/s by operand dtype name.")
    simt_tflops: float = Field(gt=0, description="float32 matmul TFLOP/s without tensor cores (TF32 off).")
    method: dict[str, str] = Field(default_factory=dict, description="How each figure was measured.")
    samples_ms: dict[str, list[float]] = Field(default_factory=dict, description="Every timed run, ms, per figure.")
    spread: dict[str, Spread] = Field(
        default_factory=dict, description="Median, IQR and stability of each figure's kept samples, per figure.")
    skipped: dict[str, str] = Field(default_factory=dict, description="Dtypes not measured, and why.")
    warnings: list[str] = Field(default_factory=list, description="e.g. the GPU throttled during calibration.")
    load: LoadReading | None = Field(default=None, description="The load the calibration ran under.")
    versions: dict[str, str] = Field(
        default_factory=dict, description="torch, triton, numba versions at calibration: part of the cache key.")
    measured_at: str = Field(description="ISO 8601 UTC time of the measurement.")
    torch_version: str

    def peaks(self) -> Peaks:
        """These ceilings as `Peaks(source="calibrated")`.

        float32 is the SIMT rate, not a tensor entry. float8_e5m2 takes the measured
        float8_e4m3fn rate (both formats run at one rate on every FP8 tensor core).
        """
        tensor = {name: tflops for name, tflops in self.matmul_tflops.items() if name != "float32"}
        if "float8_e4m3fn" in tensor:
            tensor.setdefault("float8_e5m2", tensor["float8_e4m3fn"])
        return Peaks(tensor, self.simt_tflops, self.dram_bandwidth_gb_s, "calibrated")

    @property
    def unstable(self) -> list[str]:
        """The figures whose kept samples stayed unstable after their re-runs."""
        return [name for name, spread in self.spread.items() if not spread.stable]

    @property
    def under_load(self) -> bool:
        """Whether the calibration ran under load (False when the load was not recorded)."""
        return self.load is not None and self.load.under_load


def library_versions() -> dict[str, str]:
    """Installed versions of KEYED_LIBRARIES, read from package metadata (no import); 'absent' where missing."""
    import importlib.metadata

    versions = {}
    for name in KEYED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def cache_path(identity: DeviceIdentity, versions: dict[str, str] | None = None) -> Path:
    """Where the ceilings of this device, with these library versions (default: installed), are cached."""
    versions = library_versions() if versions is None else versions
    slug = _slug(identity.name) or identity.kind
    key = "_".join(f"{name}-{_slug(versions.get(name, 'absent'), keep='.+')}" for name in KEYED_LIBRARIES)
    return cache_root() / "ceilings" / identity.kind / f"{slug}-{identity.sm_count}" / f"{key}.json"


def load_cached(identity: DeviceIdentity) -> Ceilings | None:
    """The cached ceilings of this device with the installed library versions; None if absent, unreadable or foreign."""
    versions = library_versions()
    try:
        ceilings = Ceilings.model_validate_json(cache_path(identity, versions).read_text())
    except (OSError, ValidationError, ValueError):
        return None  # a missing or stale cache is re-measured, never an error
    if (ceilings.device, ceilings.device_name, ceilings.sm_count, ceilings.versions) != (
        identity.kind, identity.name, identity.sm_count, versions
    ):
        return None
    return ceilings


def write_ceilings(path: Path, ceilings: Ceilings) -> None:
    """Write `ceilings` to `path` atomically (readers never see half a file); bumps `generation()`."""
    global _generation
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(ceilings.model_dump_json(indent=2))
    os.replace(tmp, path)
    with _lock:
        _generation += 1


def generation() -> int:
    """How many ceilings files this process has written: part of `Device.parse`'s cache key,
    so that a device parsed after a calibration carries the new ceilings."""
    return _generation


_generation = 0
_lock = threading.Lock()


def _slug(text: str, keep: str = "") -> str:
    return re.sub(rf"[^a-z0-9{re.escape(keep)}]+", "-", text.lower()).strip("-")
