"""The data model: FlashInfer Trace JSON, read and written exactly, with solforge's
additions under `solforge` keys that other readers ignore."""

from __future__ import annotations

from solforge.spec.dataset import Dataset, load_dataset, write_dataset
from solforge.spec.definition import (
    DEFAULT_TOLERANCES,
    AxisConst,
    AxisExpr,
    AxisVar,
    Definition,
    DefinitionExtension,
    DType,
    InputGenerator,
    InputsGenerator,
    TensorSpec,
    Tolerance,
    WorkFormulas,
    eval_axis_expr,
)
from solforge.spec.errors import SpecError
from solforge.spec.io import (
    check_definition,
    check_solution,
    check_workload,
    dump_json,
    load_definition,
    load_solution,
    load_workloads,
    parse_model,
    read_json,
    read_jsonl,
    to_dict,
    workload_trace,
    write_jsonl,
)
from solforge.spec.solution import BuildSpec, Language, Solution, SourceFile
from solforge.spec.trace import (
    Correctness,
    Environment,
    Evaluation,
    EvaluationExtension,
    EvaluationStatus,
    GuardFinding,
    Performance,
    SolReport,
    TimingStats,
    Trace,
)
from solforge.spec.workload import (
    InputSpec,
    RandomInput,
    SafetensorsInput,
    ScalarInput,
    Workload,
    WorkloadExtension,
)

__all__ = [name for name in dir() if not name.startswith("_") and name != "annotations"]
