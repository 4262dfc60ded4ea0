"""The data model reads and writes FlashInfer Trace JSON, and bad input names file and field."""

from __future__ import annotations

import json

import pytest

from solforge.spec import (
    Definition,
    EvaluationStatus,
    SpecError,
    Trace,
    load_dataset,
    load_definition,
    load_solution,
    load_workloads,
    to_dict,
    write_dataset,
)

# Written in FlashInfer-Bench's published form: no solforge keys, `null` scalar shape.
FI_DEFINITION = {
    "name": "rmsnorm_h128",
    "op_type": "rmsnorm",
    "description": "RMSNorm over a hidden size of 128.",
    "tags": ["status:verified", "model:test"],
    "axes": {
        "batch_size": {"type": "var", "description": "tokens"},
        "hidden_size": {"type": "const", "value": 128},
        "half_hidden": {"type": "expr", "expression": "hidden_size // 2"},
    },
    "constraints": ["batch_size > 0"],
    "inputs": {
        "hidden_states": {"shape": ["batch_size", "hidden_size"], "dtype": "bfloat16"},
        "weight": {"shape": ["hidden_size"], "dtype": "bfloat16"},
        "eps": {"shape": None, "dtype": "float32"},
    },
    "outputs": {"output": {"shape": ["batch_size", "hidden_size"], "dtype": "bfloat16"}},
    "reference": (
        "import torch\n\n"
        "def run(hidden_states, weight, eps):\n"
        "    x = hidden_states.to(torch.float32)\n"
        "    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)\n"
        "    return (y * weight.to(torch.float32)).to(hidden_states.dtype)\n"
    ),
}
FI_WORKLOAD_LINE = {
    "definition": "rmsnorm_h128",
    "workload": {
        "uuid": "0b9e6c1e-5a52-4b0e-9d0a-3f1f4c6b7e21",
        "axes": {"batch_size": 7},
        "inputs": {
            "hidden_states": {"type": "random"},
            "weight": {"type": "safetensors", "path": "blob/w.safetensors", "tensor_key": "weight"},
            "eps": {"type": "scalar", "value": 1e-6},
        },
    },
    "solution": None,
    "evaluation": None,
}
FI_SOLUTION = {
    "name": "rmsnorm_triton_v1",
    "definition": "rmsnorm_h128",
    "author": "someone",
    "spec": {
        "language": "triton",
        "target_hardware": ["NVIDIA_H100"],
        "entry_point": "main.py::run",
        "dependencies": ["triton >= 3.0"],
        "destination_passing_style": True,
    },
    "sources": [{"path": "main.py", "content": "def run(hidden_states, weight, eps, output):\n    pass\n"}],
    "description": "one row per program",
}
FI_TRACE = {
    "definition": "rmsnorm_h128",
    "workload": FI_WORKLOAD_LINE["workload"],
    "solution": "rmsnorm_triton_v1",
    "evaluation": {
        "status": "PASSED",
        "environment": {"hardware": "NVIDIA_H100", "libs": {"torch": "2.11.0"}},
        "timestamp": "2026-11-22T10:00:00Z",
        "log": "",
        "correctness": {"max_relative_error": 0.001, "max_absolute_error": 0.002},
        "performance": {"latency_ms": 0.01, "reference_latency_ms": 0.03, "speedup_factor": 3.0},
    },
}


def _write_dataset(root, definition=FI_DEFINITION, workload=FI_WORKLOAD_LINE, solution=FI_SOLUTION, trace=FI_TRACE):
    (root / "definitions" / "rmsnorm").mkdir(parents=True)
    (root / "definitions" / "rmsnorm" / "rmsnorm_h128.json").write_text(json.dumps(definition))
    (root / "workloads" / "rmsnorm").mkdir(parents=True)
    (root / "workloads" / "rmsnorm" / "rmsnorm_h128.jsonl").write_text(json.dumps(workload) + "\n")
    (root / "solutions").mkdir()
    (root / "solutions" / "rmsnorm_triton_v1.json").write_text(json.dumps(solution))
    (root / "traces").mkdir()
    (root / "traces" / "rmsnorm_h128.jsonl").write_text(json.dumps(trace) + "\n")


def test_flashinfer_json_round_trips_exactly(tmp_path):
    _write_dataset(tmp_path / "in")
    ds = load_dataset(tmp_path / "in")
    assert to_dict(ds.definitions["rmsnorm_h128"]) == FI_DEFINITION
    assert to_dict(ds.solutions["rmsnorm_h128"][0]) == FI_SOLUTION
    assert to_dict(ds.traces[0]) == FI_TRACE
    assert ds.traces[0].evaluation.status is EvaluationStatus.PASSED
    write_dataset(ds, tmp_path / "out")
    again = load_dataset(tmp_path / "out")
    assert to_dict(again.definitions["rmsnorm_h128"]) == FI_DEFINITION
    line = (tmp_path / "out" / "workloads" / "rmsnorm" / "rmsnorm_h128.jsonl").read_text().strip()
    assert json.loads(line) == FI_WORKLOAD_LINE
    assert to_dict(again.traces[0]) == FI_TRACE


def test_solforge_extensions_survive_and_default_when_absent(tmp_path):
    d = dict(FI_DEFINITION, solforge={
        "forbidden_calls": ["torch.nn.functional.rms_norm"],
        "tolerances": {"bfloat16": {"atol": 0.02, "rtol": 0.02, "required_matched_ratio": 0.99}},
        "work": {"bytes": "2 * batch_size * hidden_size * 2"},
    })
    defn = Definition.model_validate(d)
    assert defn.solforge.forbidden_calls == ["torch.nn.functional.rms_norm"]
    assert defn.tolerance_for(defn.outputs["output"].dtype).required_matched_ratio == 0.99
    assert to_dict(defn) == d
    plain = Definition.model_validate(FI_DEFINITION)
    assert plain.solforge.forbidden_calls == []
    assert plain.tolerance_for(plain.outputs["output"].dtype).atol > 0
    assert "solforge" not in to_dict(plain)


def test_resolve_axes_evaluates_expr_axes():
    defn = Definition.model_validate(FI_DEFINITION)
    assert defn.resolve_axes({"batch_size": 3}) == {"batch_size": 3, "hidden_size": 128, "half_hidden": 64}
    with pytest.raises(SpecError, match="batch_size"):
        defn.resolve_axes({})


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["inputs"]["weight"].update(shape=["hidden"]), "inputs.weight.shape[0]: unknown axis 'hidden'"),
        (lambda d: d["inputs"]["weight"].update(dtype="bfloat17"), "inputs.weight.dtype: unknown dtype 'bfloat17'"),
        (lambda d: d.update(reference="import torch\n\ndef forward(x):\n    return x\n"),
         "reference: no top-level function 'run'"),
        (lambda d: d["axes"].update(hidden_size={"type": "const"}), "axes.hidden_size.value: required field is missing"),
        (lambda d: d["axes"]["half_hidden"].update(expression="hidden // 2"),
         "axes.half_hidden.expression: unknown axis 'hidden'"),
    ],
)
def test_bad_definition_names_file_and_field(tmp_path, mutate, expected):
    d = json.loads(json.dumps(FI_DEFINITION))
    mutate(d)
    path = tmp_path / "definitions" / "rmsnorm.json"
    path.parent.mkdir()
    path.write_text(json.dumps(d))
    with pytest.raises(SpecError) as exc:
        load_definition(path)
    message = str(exc.value)
    assert message.startswith(str(path) + ": ")
    assert expected in message
    assert "\n" not in message


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x",\n  "op_type": }')
    with pytest.raises(SpecError, match=r"bad.json: malformed JSON at line 2 column"):
        load_definition(path)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(SpecError, match=r"nope.json: no such file"):
        load_solution(tmp_path / "nope.json")


def test_solution_signature_must_match_definition(tmp_path):
    defn = Definition.model_validate(FI_DEFINITION)
    sol = json.loads(json.dumps(FI_SOLUTION))
    sol["sources"][0]["content"] = "def run(x, weight, eps, output):\n    pass\n"
    path = tmp_path / "sol.json"
    path.write_text(json.dumps(sol))
    with pytest.raises(SpecError, match=r"sol.json: spec.entry_point: run\(x, weight, eps, output\) does not match"):
        load_solution(path, defn)
    sol["spec"]["entry_point"] = "kernel.py::run"
    path.write_text(json.dumps(sol))
    with pytest.raises(SpecError, match=r"spec.entry_point: file 'kernel.py' is not among the sources"):
        load_solution(path, defn)


def test_workload_with_unknown_axis_names_the_line(tmp_path):
    defn = Definition.model_validate(FI_DEFINITION)
    line = json.loads(json.dumps(FI_WORKLOAD_LINE))
    line["workload"]["axes"] = {"batch": 7}
    path = tmp_path / "w.jsonl"
    path.write_text(json.dumps(FI_WORKLOAD_LINE) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(SpecError, match=r"w.jsonl:2: workload.axes.batch: not an axis of the definition"):
        load_workloads(path, defn)


def test_workload_trace_has_no_solution_or_evaluation():
    t = Trace.model_validate(FI_WORKLOAD_LINE)
    assert t.is_workload_trace
    assert not Trace.model_validate(FI_TRACE).is_workload_trace


def test_models_built_in_python_write_their_union_tags(tmp_path):
    from solforge.spec import AxisConst, AxisVar, RandomInput, ScalarInput, Workload, dump_json

    defn = Definition(
        name="d", op_type="t", axes={"n": AxisVar(), "h": AxisConst(value=3)},
        inputs={"x": {"shape": ["n", "h"], "dtype": "float32"}}, outputs={"y": {"shape": ["n", "h"], "dtype": "float32"}},
        reference="def run(x):\n    return x\n",
    )
    again = Definition.model_validate_json(dump_json(defn))
    assert isinstance(again.axes["h"], AxisConst) and again.axes["h"].value == 3
    assert isinstance(again.axes["n"], AxisVar)
    wl = Workload(uuid="u", axes={"n": 2}, inputs={"x": RandomInput(), "s": ScalarInput(value=1.5)})
    assert json.loads(dump_json(wl))["inputs"] == {"x": {"type": "random"}, "s": {"type": "scalar", "value": 1.5}}
