"""Device kinds as plugins: what a kind of device must say about itself, and the registry.

A device kind (the CPU, CUDA, a toy kind in the tests) is one class derived from
`DeviceKind`, decorated with `@register_device_kind`, in one file. The built-in kinds
live in `solforge/hardware/kinds/`, one file each, and are found by listing that folder;
a kind defined elsewhere registers itself when its module is imported (for example
through `$SOLFORGE_PLUGINS`, see `solforge.plugins`). Nothing else names the kinds: code
asks a `Device` (its timer, worker environment, languages, memory), never compares a
device string.

The registry is read lazily: the first lookup imports the built-in kinds and the
plugins, so `import solforge.hardware` stays light.
"""

from __future__ import annotations

import abc
import enum
import importlib
import pkgutil
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

from solforge.spec import SpecError

if TYPE_CHECKING:
    from solforge.hardware.ceilings import Ceilings
    from solforge.hardware.datasheet import DeviceSpec
    from solforge.hardware.identity import DeviceIdentity

_NAME = re.compile(r"[a-z][a-z0-9_]*")


class TimerKind(str, enum.Enum):
    """How the judge times one call on a device kind.

    `perf_counter`: the judge reads `time.perf_counter` on its side of a handshake with
    the solution process (host execution: the call has finished when the reply comes).
    `cuda_events`: CUDA events recorded around the call on the device's stream, read
    after a synchronize (device execution is asynchronous to the host).
    """

    perf_counter = "perf_counter"
    cuda_events = "cuda_events"


@dataclass(frozen=True)
class DeviceMemory:
    """Memory of one device, in bytes, read when asked (free memory changes); None where unknown."""

    total_bytes: int | None
    free_bytes: int | None


class DeviceKind(abc.ABC):
    """One kind of device. Subclass it in one file and decorate the class with `@register_device_kind`.

    Class attributes (data, read by `Device`):
    - `name`: the device string's head ("cpu", "cuda"); lower case, `[a-z][a-z0-9_]*`.
    - `indexed`: whether "name:N" selects one of several devices ("cuda:1").
    - `priority`: `resolve_device(None)` picks the available kind with the highest.
    - `timer`: how the judge times a call (`TimerKind`).
    - `languages`: the solution languages a search uses by default on this kind, first
      the preferred one (names as in `solforge.spec.Language`).
    - `env`: what a worker process on this kind needs in its environment: a string value
      is set, None removes the variable.
    """

    name: ClassVar[str]
    indexed: ClassVar[bool] = False
    priority: ClassVar[int] = 0
    timer: ClassVar[TimerKind]
    languages: ClassVar[tuple[str, ...]]
    env: ClassVar[Mapping[str, str | None]] = {}

    @abc.abstractmethod
    def count(self) -> int:
        """How many devices of this kind this process can use (0 when none)."""

    @abc.abstractmethod
    def identify(self, index: int) -> DeviceIdentity:
        """What device `index` says about itself, read without measuring.

        Raises SpecError (one line) when the device is not there.
        """

    @abc.abstractmethod
    def memory(self, index: int) -> DeviceMemory:
        """Total and free memory of device `index`, in bytes, read now."""

    def match(self, identity: DeviceIdentity) -> tuple[DeviceSpec | None, str]:
        """The datasheet row of this device, and how it matched or why nothing did.

        The default has no datasheet: the device is "unknown" to the datasheet, never a guess.
        """
        return None, (f"{self.name} device '{identity.name}': unknown to the datasheet, no datasheet peaks; "
                      "only calibrated ceilings")

    def torch_device(self, index: int) -> str:
        """The torch device string tensors for this device are allocated on."""
        return f"{self.name}:{index}" if self.indexed else self.name

    def measure_ceilings(self, identity: DeviceIdentity) -> Ceilings:
        """Measure what this device reaches (bandwidth, matmul TFLOP/s); see `solforge.hardware.calibrate`.

        The default refuses: a kind that cannot be calibrated says so instead of guessing.
        """
        raise SpecError(f"device '{self.name}': this device kind cannot be calibrated")


KindT = TypeVar("KindT", bound=type[DeviceKind])

_KINDS: dict[str, DeviceKind] = {}
_lock = threading.RLock()
_builtins_loaded = False


def register_device_kind(cls: KindT) -> KindT:
    """Class decorator: register `cls` (a `DeviceKind` subclass) under `cls.name`.

    Registering the same class again (its module imported twice under one file) replaces
    the entry; a different class claiming a registered name raises ValueError, as does a
    name that is not `[a-z][a-z0-9_]*` or a class that leaves a required attribute unset.
    """
    if not (isinstance(cls, type) and issubclass(cls, DeviceKind)):
        raise TypeError(f"{cls!r} is not a DeviceKind subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"device kind {cls.__qualname__}: name must match [a-z][a-z0-9_]*, got {name!r}")
    for attribute in ("timer", "languages"):
        if not hasattr(cls, attribute):
            raise ValueError(f"device kind '{name}': class attribute '{attribute}' is not set")
    with _lock:
        known = _KINDS.get(name)
        if known is not None and not _same_class(type(known), cls):
            raise ValueError(f"device kind '{name}' is already registered by {type(known).__module__}."
                             f"{type(known).__qualname__}")
        _KINDS[name] = cls()
    return cls


def device_kind(name: str) -> DeviceKind | None:
    """The registered kind called `name`, or None."""
    return _registered().get(name)


def device_kinds() -> tuple[DeviceKind, ...]:
    """Every registered kind, highest `priority` first (then by name)."""
    return tuple(sorted(_registered().values(), key=lambda kind: (-kind.priority, kind.name)))


def _registered() -> dict[str, DeviceKind]:
    global _builtins_loaded
    from solforge.plugins import load_plugins

    with _lock:
        if not _builtins_loaded:
            folder = Path(__file__).with_name("kinds")
            for module in pkgutil.iter_modules([str(folder)]):
                importlib.import_module(f"solforge.hardware.kinds.{module.name}")
            _builtins_loaded = True
        load_plugins()
        return _KINDS


def _same_class(a: type, b: type) -> bool:
    import inspect

    def where(cls: type) -> tuple[str, str | None]:
        try:
            return cls.__qualname__, inspect.getsourcefile(cls)
        except TypeError:
            return cls.__qualname__, cls.__module__

    return a is b or where(a) == where(b)
