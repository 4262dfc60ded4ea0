"""The typed messages between the judge and its two children (reference and solution).

Every request carries an `id`; its reply carries the same `id`. The judge sends one
request at a time per child and takes as the answer only a reply with the pending id:
anything else (a late reply, a duplicate, a reply nobody asked for) is dropped, logged,
and, from a solution's process, reported as a guard finding (see `judge`).

Messages travel as JSON over a Unix socket (`multiprocessing.connection.Connection`),
never pickle: a reply cannot execute code in the judge. The timed CPU handshake does
not use these: it exchanges fixed 12-byte frames (`HOT_FRAME`), see `timing`.
"""

from __future__ import annotations

import struct
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from solforge.spec import EvaluationStatus, GuardFinding

# (kind, iteration, slot): READY, GO and STOP from the judge, DONE from the solution (`handshake`);
# 3 x uint32, little-endian.
HOT_FRAME = struct.Struct("<III")


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int = Field(ge=0, description="Request id; a reply echoes it.")


# -- layouts -------------------------------------------------------------------------------


class TensorLayout(BaseModel):
    """Where one tensor lives in an arena: the judge's own record of its dtype and shape."""

    model_config = ConfigDict(frozen=True)

    name: str
    dtype: str = Field(description="A torch dtype name, e.g. 'bfloat16'.")
    shape: tuple[int, ...]
    offset: int = Field(ge=0, description="Byte offset in the arena (256-byte aligned).")
    nbytes: int = Field(ge=0)
    scalar: bool = Field(default=False, description="A Python number: 8 bytes (int64, float64 or bool).")


class SlotLayout(BaseModel):
    """One set of tensors (the inputs of one call, or its outputs)."""

    model_config = ConfigDict(frozen=True)

    tensors: tuple[TensorLayout, ...]


class ArenaLayout(BaseModel):
    """A shared-memory arena: `inputs[k]` and `outputs[k]` for each slot k of the ring."""

    model_config = ConfigDict(frozen=True)

    size: int = Field(ge=0, description="Total bytes.")
    inputs: tuple[SlotLayout, ...]
    outputs: tuple[SlotLayout, ...]


# -- requests to a solution's process ------------------------------------------------------


class Calibrate(_Message):
    """Time the bare handshake before any solution code is loaded (see `timing`)."""

    kind: Literal["calibrate"] = "calibrate"
    copy_bytes: list[int] = Field(description="Output sizes to calibrate the hand-over copy for (non-DPS).")
    rounds: int = Field(ge=1)


class Load(_Message):
    kind: Literal["load"] = "load"
    definition: dict[str, Any]
    solution: dict[str, Any]
    workdir: str
    trusted: bool
    build_timeout_s: float
    compile_cache_dir: str | None = None  # BenchConfig.compile_cache_dir (`compile_cache`)


class Prime(_Message):
    """Call the built solution once on inputs of `workload` (its JSON) that the solution's
    process draws itself: not timed, not judged, its outputs dropped, its launches not
    counted; under the guards of a call and the integrity check after it. A compiler that
    works at the first call (numba's) works here, while another solution may be judged
    (`judge.run_judged`, BenchConfig.build_ahead). Replied with Primed, or Failed for a
    reward hack seen."""

    kind: Literal["prime"] = "prime"
    workload: dict[str, Any]


class Attach(_Message):
    """Map a workload's arena (its file descriptor follows this message). The reference
    process also gets the definition and the workload (it computes their reference)."""

    kind: Literal["attach"] = "attach"
    workload: str
    layout: ArenaLayout
    definition: dict[str, Any] | None = None
    workload_data: dict[str, Any] | None = None
    dataset_root: str | None = None


class Call(_Message):
    """One correctness call on input slot `slot`, outputs into output slot `slot`."""

    kind: Literal["call"] = "call"
    workload: str
    slot: int
    record: bool = Field(description="Record the torch ops the call reaches (forbidden calls, decoys).")


class Hot(_Message):
    """Enter the timed handshake loop on `workload` (CPU); answered by `Cooled` after HOT_STOP."""

    kind: Literal["hot"] = "hot"
    workload: str


class TimeOnDevice(_Message):
    """The timed loop on a GPU, run by the solution's process with CUDA events (see `timing`)."""

    kind: Literal["time_on_device"] = "time_on_device"
    workload: str
    seeds: list[int]
    warmup_seeds: list[int]
    warmup_s: float
    flush_bytes: int
    cuda_graph: bool
    lock_clocks: bool
    keep: list[int] = Field(description="Output slots of the kept-outputs arena, one per iteration (-1: not kept).")
    kept_workload: str = Field(description="The key under which the kept-outputs arena was attached.")
    null: bool = Field(default=False, description="Time the loop without the solution (before it is loaded).")


class Detach(_Message):
    kind: Literal["detach"] = "detach"
    workload: str


class Exit(_Message):
    kind: Literal["exit"] = "exit"


# -- requests to the reference process -----------------------------------------------------


class Expect(_Message):
    """The reference's outputs for each input slot in `slots` of the workload's reference
    arena, written into the output slot of the same number."""

    kind: Literal["expect"] = "expect"
    workload: str
    slots: list[int]


class ExpectSeeded(_Message):
    """The reference's outputs on inputs regenerated on the device from `seed` (a timed
    iteration on a GPU), written into output slot `slot`."""

    kind: Literal["expect_seeded"] = "expect_seeded"
    workload: str
    seed: int
    distribution: str
    slot: int


Request = Annotated[
    Calibrate | Load | Prime | Attach | Call | Hot | TimeOnDevice | Detach | Exit | Expect | ExpectSeeded,
    Field(discriminator="kind"),
]
REQUEST = TypeAdapter(Request)


# -- replies -------------------------------------------------------------------------------


class OpRecord(BaseModel):
    """What the torch op recorder saw during one call (see `guards.recorder`)."""

    functions: list[str] = Field(default_factory=list, description="Canonical names of torch functions called.")
    modules: list[str] = Field(default_factory=list, description="Classes of nn.Modules whose forward ran.")
    aten: dict[str, int] = Field(default_factory=dict, description="aten op name -> calls.")
    compute_ms: float = Field(default=0.0, description="Time inside torch compute ops (not allocations, views).")
    nested_ms: float = Field(default=0.0, description="Time in torch functions called inside a launch of the "
                             "solution's own kernels (from a numba objmode block), recording included: also in the "
                             "launch's own time, ms.")
    profiled: list[str] = Field(default_factory=list, description="Op names torch's profiler recorded (C++ level).")
    intact: bool = Field(default=True, description="False when the recorder was removed during the call.")


class Ready(_Message):
    kind: Literal["ready"] = "ready"
    pid: int


class Calibrated(_Message):
    kind: Literal["calibrated"] = "calibrated"


class Loaded(_Message):
    kind: Literal["loaded"] = "loaded"
    runnable: bool
    log: str = ""
    findings: list[GuardFinding] = Field(default_factory=list)
    own_kernels: list[str] = Field(default_factory=list, description="Kernels defined in the solution's modules.")


class Primed(_Message):
    kind: Literal["primed"] = "primed"


class Attached(_Message):
    kind: Literal["attached"] = "attached"


class Called(_Message):
    kind: Literal["called"] = "called"
    record: OpRecord | None = None
    findings: list[GuardFinding] = Field(default_factory=list)
    same_storage_as: int | None = Field(default=None, description="Earlier call whose returned storage this call returned again.")
    solution_ms: float = Field(default=0.0, description="The solution's own reading of the call (untrusted).")
    launches: int = Field(default=0, description="Launches of the solution's own kernels so far (decoy guard).")
    own_kernel_ms: float = Field(default=0.0, description="Time inside those launches so far, ms (host side).")
    profiled_own: bool | None = Field(default=None, description="On CUDA: the profiler saw one of its kernels.")
    profiled_names: list[str] = Field(default_factory=list)


class Cooled(_Message):
    """The timed loop is over; what the solution's side saw (untrusted, never a verdict alone)."""

    kind: Literal["cooled"] = "cooled"
    solution_samples_ms: list[float] = Field(default_factory=list)
    profiled: list[str] = Field(default_factory=list, description="Ops the profiler saw in the profiled timed calls.")
    profiled_compute_ms: list[float] = Field(default_factory=list, description="Per profiled timed call: self time "
                                             "of the torch compute ops the profiler saw, ms.")
    profiled_own_ms: list[float] = Field(default_factory=list, description="Per profiled timed call: time inside "
                                         "the solution's own kernel launches, ms (host side).")
    launches: int = Field(default=0, description="Launches of the solution's own kernels during this timed loop.")
    findings: list[GuardFinding] = Field(default_factory=list)


class TimedOnDevice(_Message):
    kind: Literal["timed_on_device"] = "timed_on_device"
    samples_ms: list[float]
    method: str
    clocks: dict[str, float | int | str | None] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    findings: list[GuardFinding] = Field(default_factory=list)


class Detached(_Message):
    kind: Literal["detached"] = "detached"


class ExpectedReply(_Message):
    kind: Literal["expected"] = "expected"
    precision: str


class Failed(_Message):
    """A verdict from a child: the call (or build) failed."""

    kind: Literal["failed"] = "failed"
    status: EvaluationStatus
    log: str
    findings: list[GuardFinding] = Field(default_factory=list)


class DefinitionError(_Message):
    """The problem's own data is at fault (a reference that returns the wrong shape)."""

    kind: Literal["definition_error"] = "definition_error"
    message: str


Reply = Annotated[
    Ready | Calibrated | Loaded | Primed | Attached | Called | Cooled | TimedOnDevice | Detached | ExpectedReply | Failed
    | DefinitionError,
    Field(discriminator="kind"),
]
REPLY = TypeAdapter(Reply)
