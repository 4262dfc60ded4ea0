"""The `Device`: one typed object for the device a kernel runs on, parsed once per process.

`Device.parse("cpu" | "cuda" | "cuda:1")` (or `resolve_device(None)`, this machine's
default device) reads the device's identity, matches it to the datasheet, and loads its
cached calibration, once per process and device string ("cuda" and "cuda:0" are one):
every later parse returns the same object. A calibration written by this process
(`solforge.hardware.calibrate`) makes the next parse read the device again, so that
it carries the new ceilings; a `Device` already handed out keeps what it was parsed with.

What a device kind contributes (timer, worker environment, languages, memory, how it
is identified and calibrated) lives in its plugin (`solforge.hardware.registry`,
`solforge/hardware/kinds/`); `Device` only asks it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from solforge.cache import cache_root
from solforge.hardware.ceilings import Ceilings, cache_path, generation, load_cached
from solforge.hardware.datasheet import DevicePeaks, DeviceSpec, Peaks, choose_peaks
from solforge.hardware.identity import DeviceIdentity
from solforge.hardware.registry import DeviceKind, DeviceMemory, TimerKind, device_kind, device_kinds
from solforge.spec import SpecError

_DEVICE = re.compile(r"([a-z][a-z0-9_]*)(?::(\d+))?")


@dataclass(frozen=True, eq=False)
class Device:
    """A device, as parsed once per process: its kind, identity, peaks, timer, worker env and languages.

    Fields:
    - `kind`: the device kind's plugin (`DeviceKind`); `type` is its name ("cpu", "cuda").
    - `index`: which device of its kind (0 for a kind that is not indexed).
    - `identity`: what the device says about itself (`DeviceIdentity`).
    - `spec`: its datasheet row, or None when it has none ("unknown": never a guess);
      `match_reason` says how it matched or why nothing did.
    - `ceilings`: its cached calibration, or None; `ceilings_path` is where it is cached.
    - `count`: how many devices of this kind this process can use.

    Two parses of one device string return the same object; a `Device` pickles as its
    device string and is parsed again on the other side.
    """

    kind: DeviceKind
    index: int
    identity: DeviceIdentity
    spec: DeviceSpec | None
    match_reason: str
    ceilings: Ceilings | None
    ceilings_path: Path
    count: int

    @staticmethod
    def parse(text: str) -> Device:
        """The device `text` names ("cpu", "cuda", "cuda:N", or another registered kind), once per process.

        Raises SpecError (one line) for a string that names no registered kind (or an
        index on a kind that has none) and for a device that is not there (CUDA on a
        machine without it, an index past the last device).
        """
        return _parse(text)

    # -- identity -------------------------------------------------------------------

    def __str__(self) -> str:
        return self.canonical

    def __repr__(self) -> str:
        return f"Device({self.canonical!r}, {self.name!r})"

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return _parse, (self.canonical,)

    @property
    def canonical(self) -> str:
        """The device string in one spelling: 'cpu', 'cuda:0'."""
        return f"{self.kind.name}:{self.index}" if self.kind.indexed else self.kind.name

    @property
    def type(self) -> str:
        """The kind's name, as `torch.device.type` spells it for the built-in kinds ("cpu", "cuda")."""
        return self.kind.name

    @property
    def name(self) -> str:
        """The device's own name (the CPU model, the GPU's reported name)."""
        return self.identity.name

    @property
    def sm_count(self) -> int:
        """SMs / compute units (CUDA) or logical CPUs available to this process (CPU)."""
        return self.identity.sm_count

    @property
    def compute_capability(self) -> tuple[int, int] | None:
        return self.identity.compute_capability

    @property
    def cache_bytes(self) -> int | None:
        """The cache a timing flush must overwrite, in bytes: the L2 of a GPU, the last-level cache of a CPU."""
        return self.identity.cache_bytes

    @property
    def l2_bytes(self) -> int | None:
        """`cache_bytes`, under the name `DetectedDevice` used."""
        return self.identity.cache_bytes

    @property
    def memory_bytes(self) -> int | None:
        """Total memory of the device in bytes, as identified (see `memory()` for free bytes now)."""
        return self.identity.memory_bytes

    @property
    def reason(self) -> str:
        """How the device matched the datasheet (or why it did not), and its calibration state."""
        if self.ceilings is None:
            return f"{self.match_reason}; not calibrated yet (run `solforge calibrate`)"
        note = _calibration_note(self.ceilings)
        return f"{self.match_reason}; calibrated ceilings from {self.ceilings_path}" + (f" ({note})" if note else "")

    # -- what the harness asks --------------------------------------------------------

    @property
    def timer(self) -> TimerKind:
        """How the judge times a call on this device."""
        return self.kind.timer

    @property
    def languages(self) -> tuple[str, ...]:
        """Solution languages a search uses by default here, the preferred one first."""
        return self.kind.languages

    @property
    def torch_device(self) -> str:
        """The torch device string tensors for this device live on ('cpu', 'cuda:1')."""
        return self.kind.torch_device(self.index)

    @property
    def env_rules(self) -> Mapping[str, str | None]:
        """What a worker on this device needs in its environment: a value sets, None removes."""
        return self.kind.env

    def worker_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """A copy of `environ` with this device kind's `env_rules` applied.

        The caller scrubs `environ` first (its allow-list is the harness's); this adds
        what the device needs, e.g. TRITON_INTERPRET=1 on the CPU, and removes what it
        must not see, e.g. TRITON_INTERPRET on a GPU.
        """
        env = dict(environ)
        for key, value in self.env_rules.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def memory(self) -> DeviceMemory:
        """Total and free memory of the device, in bytes, read now (free memory changes)."""
        return self.kind.memory(self.index)

    # -- peaks ------------------------------------------------------------------------

    def datasheet_peaks(self) -> Peaks | None:
        """The matched datasheet row's peaks; None for a device without one (the CPU, an unknown GPU)."""
        return self.spec.peaks() if self.spec is not None else None

    def calibrated_peaks(self) -> Peaks | None:
        """Peaks from the cached calibration; None until `solforge calibrate` has run on this device."""
        return self.ceilings.peaks() if self.ceilings is not None else None

    @property
    def peaks(self) -> DevicePeaks:
        """Both sets of peaks and the one SOL bounds use, with why (`datasheet.choose_peaks` decides)."""
        note = _calibration_note(self.ceilings) if self.ceilings is not None else ""
        return choose_peaks(self.datasheet_peaks(), self.calibrated_peaks(), calibration_note=note)


def resolve_device(device: str | Device | None = None) -> Device:
    """`device` as a `Device`: a string is parsed (`Device.parse`), a Device is returned as is, and None
    gives this machine's default device: the first kind, by priority, with a device
    available (CUDA when torch sees a GPU, else the CPU). Raises SpecError as `Device.parse`."""
    if isinstance(device, Device):
        return device
    if device is not None:
        return _parse(device)
    for kind in device_kinds():
        if kind.count() > 0:
            return _parse(kind.name)
    raise SpecError("device: no device of any registered kind is available here")


def forget_devices() -> None:
    """Drop every parsed device, so that the next parse reads the devices again (tests)."""
    with _lock:
        _parsed.clear()


def split_device(text: str) -> tuple[DeviceKind, int]:
    """The kind and index `text` names, without detecting anything; SpecError (one line) when it names none."""
    match = _DEVICE.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    kind = device_kind(match.group(1)) if match else None
    if match is None or kind is None or (match.group(2) is not None and not kind.indexed):
        raise SpecError(f"device '{text}': expected {_expected()}")
    return kind, int(match.group(2) or 0)


_parsed: dict[tuple[str, str, int], Device] = {}
_lock = threading.RLock()


def _parse(text: str) -> Device:
    kind, index = split_device(text)
    canonical = f"{kind.name}:{index}" if kind.indexed else kind.name
    key = (canonical, str(cache_root()), generation())
    with _lock:
        device = _parsed.get(key)
        if device is None:
            identity = kind.identify(index)
            spec, match_reason = kind.match(identity)
            device = Device(
                kind=kind, index=index, identity=identity, spec=spec, match_reason=match_reason,
                ceilings=load_cached(identity), ceilings_path=cache_path(identity),
                count=kind.count(),
            )
            _parsed[key] = device
        return device


def _expected() -> str:
    names = []
    for kind in device_kinds():
        names.append(f"'{kind.name}'")
        if kind.indexed:
            names.append(f"'{kind.name}:N'")
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def _calibration_note(ceilings: Ceilings) -> str:
    notes = [f"measured {ceilings.measured_at}"]
    if ceilings.under_load:
        notes.append("taken under load")
    if ceilings.unstable:
        notes.append(f"unstable: {', '.join(ceilings.unstable)}")
    return ", ".join(notes)
