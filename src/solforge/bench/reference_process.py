"""What the reference process does: compute a definition's expected outputs.

One per device for the judge's life. It runs only the definitions' reference code
(problem data, trusted like the judge) and never loads a solution, so nothing a
solution does can reach it; it is not dumpable (PR_SET_DUMPABLE 0: other processes of
the user cannot read its memory or descriptors through /proc), and its arenas are
shared with the judge alone.

Requests: `attach` (a workload's reference arena, with the definition and workload),
`expect` (the reference on the inputs in an input slot, written to the matching output
slot), `expect_seeded` (the same on inputs it regenerates on its device from a seed:
how the judge checks a timed iteration on a GPU, whose inputs were made there),
`detach`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from solforge.bench.arena import Arena
from solforge.bench.messages import (
    REQUEST,
    Attach,
    Attached,
    DefinitionError,
    Detach,
    Detached,
    Exit,
    Expect,
    ExpectedReply,
    ExpectSeeded,
    Failed,
    Ready,
    TimedOnDevice,
    TimeOnDevice,
    _Message,
)
from solforge.spec import Definition, EvaluationStatus, SpecError, Workload


class _Prepared:
    def __init__(self, definition: Definition, workload: Workload, arena: Arena, dataset_root: str | None,
                 reference: Any):
        self.definition, self.workload, self.arena = definition, workload, arena
        self.axes = definition.resolve_axes(workload.axes)
        self.dataset_root = Path(dataset_root) if dataset_root else None
        self.reference = reference
        self.precision: str | None = None


class ReferenceSession:
    def __init__(self, device: str):
        import torch

        if device != "cpu":
            torch.cuda.set_device(torch.device(device))
        self.device = device
        self.references: dict[str, Any] = {}  # by hash of the reference source
        self.workloads: dict[str, _Prepared] = {}

    def handle(self, request: _Message, conn: Any) -> _Message:
        import torch

        from solforge.bench.correctness import ReferenceFailed

        try:
            if isinstance(request, Attach):
                from multiprocessing.reduction import recv_handle

                return self.attach(request, recv_handle(conn))
            if isinstance(request, (Expect, ExpectSeeded)):
                return self.expect(request)
            if isinstance(request, TimeOnDevice) and request.null:
                from solforge.bench.timing import null_loop_on_device

                p = self.workloads[request.workload]
                run = null_loop_on_device(p.definition, p.workload, self.device, p.dataset_root, request, p.arena)
                return TimedOnDevice(id=request.id, samples_ms=run.samples_ms, method=run.method)
            if isinstance(request, Detach):
                prepared = self.workloads.pop(request.workload, None)
                if prepared is not None:
                    prepared.arena.close()
                return Detached(id=request.id)
            return Failed(id=request.id, status=EvaluationStatus.RUNTIME_ERROR, log=f"unknown request {request.kind}")
        except SpecError as exc:
            return DefinitionError(id=request.id, message=str(exc))
        except ReferenceFailed as exc:
            return Failed(id=request.id, status=EvaluationStatus.RUNTIME_ERROR, log=str(exc))
        except (torch.OutOfMemoryError, MemoryError) as exc:
            return Failed(id=request.id, status=EvaluationStatus.RUNTIME_ERROR,
                          log=f"the reference ran out of memory on {self.device} ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); the workload is too large "
                              "for this machine")

    def attach(self, request: Attach, fd: int) -> Attached:
        from solforge.bench.build import build_reference

        assert request.definition is not None and request.workload_data is not None
        definition = Definition.model_validate(request.definition)
        key = hashlib.sha256(definition.reference.encode()).hexdigest()
        if key not in self.references:
            self.references[key] = build_reference(definition)
        workload = Workload.model_validate(request.workload_data)
        self.workloads[request.workload] = _Prepared(definition, workload, Arena.open(request.layout, fd),
                                                     request.dataset_root, self.references[key])
        return Attached(id=request.id)

    def expect(self, request: Expect | ExpectSeeded) -> ExpectedReply:
        import torch

        from solforge.bench.correctness import reference_expected

        p = self.workloads[request.workload]
        layout = p.arena.layout
        if isinstance(request, ExpectSeeded):
            from solforge.bench.inputs import make_inputs

            jobs = [(request.slot, make_inputs(p.definition, p.workload, p.axes, request.seed, request.distribution,
                                               self.device, p.dataset_root))]
        else:
            jobs = [(slot, p.arena.read(layout.inputs[slot])) for slot in request.slots]
        for slot, inputs in jobs:
            if self.device != "cpu":
                inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
            expected, p.precision = reference_expected(p.definition, p.axes, p.reference, inputs, self.device,
                                                       p.precision)
            out = p.arena.read(layout.outputs[slot])
            for (name, _), value in zip(p.definition.outputs.items(), expected):
                out[name].copy_(value)
        return ExpectedReply(id=request.id, precision=p.precision)


def serve(conn: Any, device: str) -> None:
    """Serve requests on `conn` until Exit or the judge goes away."""
    session = ReferenceSession(device)
    conn.send_bytes(Ready(id=0, pid=os.getpid()).model_dump_json().encode())
    while True:
        try:
            request = REQUEST.validate_json(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if isinstance(request, Exit):
            return
        reply = session.handle(request, conn)
        try:
            conn.send_bytes(reply.model_dump_json().encode())
        except OSError:
            return
