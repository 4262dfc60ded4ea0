"""Shared-memory arenas: the buffers the judge owns and lends to one child.

An arena is an anonymous memory file (`memfd_create`, Linux) mapped into the judge
and into exactly one child, handed over as a file descriptor on that child's socket.
It has no name in any filesystem, so no other process can open it by name; a child
that never received its descriptor cannot map it. The judge keeps one arena per
(child, workload): a solution's process maps the arena that holds the inputs it
computes on and the output buffers it writes; the reference process maps its own
arena, with its own copy of the inputs and the expected outputs, which a solution's
process never sees.

Layout: `slots` input sets and `slots` output sets (a ring: consecutive calls use
different addresses), each tensor at a 256-byte aligned offset, contiguous, in the
dtype and shape the definition gives. Scalar inputs (shape null) take 8 bytes: int64,
float64, or int64 0/1 for bool. The judge's record of each tensor (dtype, shape,
offset) is `messages.ArenaLayout`; it reads outputs back from the bytes with that
record, never from anything a child reports.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import TYPE_CHECKING, Any

from solforge.bench.messages import ArenaLayout, SlotLayout, TensorLayout
from solforge.spec import Definition

if TYPE_CHECKING:
    import torch

ALIGN_BYTES = 256
_SCALAR_BYTES = 8


def _align(n: int) -> int:
    return (n + ALIGN_BYTES - 1) // ALIGN_BYTES * ALIGN_BYTES


def _slot(specs: dict[str, Any], definition: Definition, axes: dict[str, int], offset: int) -> tuple[SlotLayout, int]:
    tensors = []
    for name, spec in specs.items():
        if spec.shape is None:
            tensors.append(TensorLayout(name=name, dtype=str(spec.dtype.to_torch()).removeprefix("torch."), shape=(),
                                        offset=offset, nbytes=_SCALAR_BYTES, scalar=True))
            offset = _align(offset + _SCALAR_BYTES)
            continue
        shape = tuple(definition.shape_of(spec, axes))
        dtype = spec.dtype.to_torch()
        count = 1
        for n in shape:
            count *= n
        nbytes = count * dtype.itemsize
        tensors.append(TensorLayout(name=name, dtype=str(dtype).removeprefix("torch."), shape=shape, offset=offset,
                                    nbytes=nbytes))
        offset = _align(offset + nbytes)
    return SlotLayout(tensors=tuple(tensors)), offset


def plan(definition: Definition, axes: dict[str, int], slots: int, *, inputs: bool = True,
         outputs: bool = True) -> ArenaLayout:
    """The layout of an arena with `slots` input sets and `slots` output sets of
    `definition` at the resolved `axes` (either kind may be left out)."""
    offset = 0
    ins, outs = [], []
    for _ in range(slots if inputs else 0):
        layout, offset = _slot(definition.inputs, definition, axes, offset)
        ins.append(layout)
    for _ in range(slots if outputs else 0):
        layout, offset = _slot(definition.outputs, definition, axes, offset)
        outs.append(layout)
    return ArenaLayout(size=max(offset, ALIGN_BYTES), inputs=tuple(ins), outputs=tuple(outs))


def slot_bytes(slot: SlotLayout) -> int:
    """Bytes of every tensor of one slot (scalars included)."""
    return sum(t.nbytes for t in slot.tensors)


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return getattr(torch, name)


class Arena:
    """One mapped arena. `Arena.create(layout)` in the judge makes the memory file;
    `Arena.open(layout, fd)` in a child maps the one it received. `fd` stays open in
    the judge until `close`, for handing to the child; a child closes its copy once
    mapped."""

    def __init__(self, layout: ArenaLayout, fd: int | None, mapping: mmap.mmap):
        self.layout = layout
        self.fd = fd
        self._map = mapping
        self._views: dict[tuple[int, str], torch.Tensor] = {}
        self._base: int | None = None

    @classmethod
    def create(cls, layout: ArenaLayout, name: str = "solforge-arena") -> Arena:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, layout.size)
            mapping = mmap.mmap(fd, layout.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        return cls(layout, fd, mapping)

    @classmethod
    def open(cls, layout: ArenaLayout, fd: int) -> Arena:
        try:
            mapping = mmap.mmap(fd, layout.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        return cls(layout, None, mapping)

    # -- tensors --------------------------------------------------------------------------

    def view(self, t: TensorLayout) -> torch.Tensor:
        """The tensor `t` as a CPU tensor over the shared bytes (zero copy; cached)."""
        import torch

        key = (t.offset, t.dtype)
        view = self._views.get(key)
        if view is None:
            dtype = torch.int64 if t.scalar else torch_dtype(t.dtype)
            if t.nbytes == 0:
                view = torch.empty(t.shape, dtype=dtype)
            else:
                raw = torch.frombuffer(self._map, dtype=torch.uint8, count=t.nbytes, offset=t.offset)
                view = raw.view(dtype).view(() if t.scalar else t.shape)
            self._views[key] = view
        return view

    def span(self, slot: SlotLayout) -> tuple[int, int]:
        """(address in this process, bytes) of the range that holds every tensor of `slot`."""
        import torch

        if self._base is None:
            self._base = torch.frombuffer(self._map, dtype=torch.uint8, count=1).data_ptr()
        if not slot.tensors:
            return self._base, 0
        start = min(t.offset for t in slot.tensors)
        end = max(t.offset + t.nbytes for t in slot.tensors)
        return self._base + start, end - start

    def raw(self, t: TensorLayout) -> bytes:
        """A copy of the bytes of `t` as they are now."""
        return self._map[t.offset:t.offset + t.nbytes]

    def write(self, slot: SlotLayout, values: dict[str, Any]) -> None:
        """Write `values` (tensors on the CPU, or Python numbers for scalars) into `slot`."""
        for t in slot.tensors:
            value = values[t.name]
            if t.scalar:
                self._map[t.offset:t.offset + _SCALAR_BYTES] = _pack_scalar(value, t.dtype)
            elif t.nbytes:
                self.view(t).copy_(value)

    def read(self, slot: SlotLayout) -> dict[str, Any]:
        """The tensors of `slot` as views (scalars as Python numbers), by name."""
        out: dict[str, Any] = {}
        for t in slot.tensors:
            out[t.name] = _unpack_scalar(self._map[t.offset:t.offset + _SCALAR_BYTES], t.dtype) if t.scalar \
                else self.view(t)
        return out

    def close(self) -> None:
        """Drop the views and unmap (once no tensor exported from the map is alive)."""
        self._views.clear()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        try:
            self._map.close()
        except BufferError:  # a caller still holds a view: the map goes with its last reference
            pass


def _pack_scalar(value: Any, dtype: str) -> bytes:
    if dtype.startswith("float") or dtype.startswith("bfloat"):
        return struct.pack("<d", float(value))
    return struct.pack("<q", int(value))


def _unpack_scalar(raw: bytes, dtype: str) -> int | float | bool:
    if dtype.startswith("float") or dtype.startswith("bfloat"):
        return struct.unpack("<d", raw)[0]
    value = struct.unpack("<q", raw)[0]
    return bool(value) if dtype == "bool" else value
