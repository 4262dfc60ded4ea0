"""The loader of the built-in problem set: names, copies, unknown names, workload selections."""

from __future__ import annotations

import pytest

from solforge.problems import (
    DEFAULT_PROBLEM,
    WORKLOAD_SELECTIONS,
    builtin_dataset,
    builtin_names,
    builtin_root,
    default_selection,
    load_builtin,
    resolve_problem,
    select_workloads,
    split_workloads,
)
from solforge.spec import SpecError, Workload


def test_builtin_root_is_a_flashinfer_dataset_directory():
    root = builtin_root()
    assert (root / "definitions").is_dir() and (root / "workloads").is_dir()
    for path in (root / "workloads").rglob("*.jsonl"):
        # workloads/<op_type>/<name>.jsonl, the definition at definitions/<op_type>/<name>.json
        assert (root / "definitions" / path.parent.name / f"{path.stem}.json").is_file(), path


def test_names_are_the_sorted_definitions_and_include_the_default():
    names = builtin_names()
    assert names == sorted(builtin_dataset().definitions)
    assert DEFAULT_PROBLEM == "rmsnorm_h4096"
    assert DEFAULT_PROBLEM in names


def test_builtin_dataset_is_cached():
    assert builtin_dataset() is builtin_dataset()


def test_load_builtin_returns_the_definition_and_all_its_workloads():
    defn, workloads = load_builtin(DEFAULT_PROBLEM)
    assert defn.name == DEFAULT_PROBLEM
    stored = builtin_dataset().workloads[DEFAULT_PROBLEM]
    assert [w.uuid for w in workloads] == [w.uuid for w in stored]
    assert any(w.smoke for w in workloads) and any(w.held_out for w in workloads)


def test_load_builtin_hands_out_copies():
    defn, workloads = load_builtin(DEFAULT_PROBLEM)
    defn.description = "changed"
    defn.solforge.forbidden_calls.clear()
    workloads[0].axes["num_tokens"] = 123456
    workloads.clear()
    again, again_workloads = load_builtin(DEFAULT_PROBLEM)
    assert again.description != "changed"
    assert again.solforge.forbidden_calls
    assert again_workloads and again_workloads[0].axes["num_tokens"] != 123456


def test_unknown_problem_names_the_built_ins_and_suggests_the_closest():
    with pytest.raises(SpecError) as exc:
        load_builtin("rmsnorm_h409")
    msg = str(exc.value)
    assert msg.startswith("unknown problem 'rmsnorm_h409'; did you mean 'rmsnorm_h4096'")
    assert f"(`solforge problems list` shows the {len(builtin_names())} built-in problems)" in msg
    assert "\n" not in msg
    assert "gemm_bf16_llama31_8b" not in msg  # only names close to the one given


def test_unknown_problem_far_from_every_name_gets_no_suggestion():
    with pytest.raises(SpecError) as exc:
        load_builtin("zzzz")
    assert "did you mean" not in str(exc.value)


def _wl(uuid: str, held_out: bool = False, smoke: bool = False) -> Workload:
    return Workload.model_validate(
        {"uuid": uuid, "axes": {"n": 1}, "solforge": {"held_out": held_out, "smoke": smoke}}
    )


WORKLOADS = [_wl("search-1"), _wl("held-1", held_out=True), _wl("smoke-1", smoke=True), _wl("search-2"),
             _wl("held-2", held_out=True), _wl("smoke-2", smoke=True)]


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("all", ["search-1", "held-1", "search-2", "held-2"]),
        ("search", ["search-1", "search-2"]),
        ("held-out", ["held-1", "held-2"]),
        ("smoke", ["smoke-1", "smoke-2"]),
    ],
)
def test_select_workloads(which, expected):
    assert [w.uuid for w in select_workloads(WORKLOADS, which)] == expected


def test_selections_are_the_documented_set():
    assert set(WORKLOAD_SELECTIONS) == {"all", "search", "held-out", "smoke"}


def test_select_workloads_rejects_an_unknown_selection():
    with pytest.raises(SpecError, match=r"unknown 'heldout' \(expected one of: all, search, held-out, smoke\)"):
        select_workloads(WORKLOADS, "heldout")


def test_search_never_sees_a_held_out_workload_of_any_builtin():
    for name in builtin_names():
        _, workloads = load_builtin(name)
        search = select_workloads(workloads, "search")
        held = select_workloads(workloads, "held-out")
        assert search and held
        assert not {w.uuid for w in search} & {w.uuid for w in held}
        assert {w.uuid for w in select_workloads(workloads, "all")} == {w.uuid for w in search + held}


SMALL = [_wl("search-1"), _wl("held-1", held_out=True), _wl("smoke-1", smoke=True),
         _wl("smoke-held", held_out=True, smoke=True)]


@pytest.mark.parametrize(
    ("device", "workloads", "search", "held_out"),
    [
        # on the CPU the smoke workloads are searched, and the gate runs held-out ones of their size
        ("cpu", SMALL, ["smoke-1"], ["smoke-held"]),
        # no smoke held-out workload: the gate falls back to the real-size held-out ones
        ("cpu", WORKLOADS, ["smoke-1", "smoke-2"], ["held-1", "held-2"]),
        # on a GPU smoke workloads are never searched, nor gated while real held-out ones exist
        ("cuda", SMALL, ["search-1"], ["held-1"]),
        ("cuda:1", WORKLOADS, ["search-1", "search-2"], ["held-1", "held-2"]),
        # no smoke workloads at all: the CPU searches the real sizes
        ("cpu", [w for w in WORKLOADS if not w.smoke], ["search-1", "search-2"], ["held-1", "held-2"]),
    ],
)
def test_split_workloads_is_the_one_rule_of_search_and_gate(device, workloads, search, held_out):
    split = split_workloads(workloads, device)
    assert [w.uuid for w in split.search] == search
    assert [w.uuid for w in split.held_out] == held_out
    assert not any(w.held_out for w in split.search)
    assert default_selection(device, workloads) == ("smoke" if device == "cpu" and any(w.smoke for w in workloads)
                                                    else "search")


def test_split_never_searches_a_held_out_workload_of_any_builtin():
    for name in builtin_names():
        _, workloads = load_builtin(name)
        for device in ("cpu", "cuda"):
            split = split_workloads(workloads, device)
            assert split.search and split.held_out, (name, device)
            assert all(w.held_out for w in split.held_out) and not any(w.held_out for w in split.search)


def test_resolve_problem_reads_the_builtin_suite_or_a_dataset(tmp_path):
    defn, workloads, root = resolve_problem(DEFAULT_PROBLEM)
    assert defn.name == DEFAULT_PROBLEM and root == builtin_root().resolve() and workloads
    from solforge.spec import dump_json, workload_trace, write_jsonl

    (tmp_path / "definitions" / defn.op_type).mkdir(parents=True)
    (tmp_path / "definitions" / defn.op_type / f"{defn.name}.json").write_text(dump_json(defn))
    write_jsonl(tmp_path / "workloads" / defn.op_type / f"{defn.name}.jsonl",
                [workload_trace(defn.name, w) for w in workloads[:2]])
    mine, mine_workloads, mine_root = resolve_problem(DEFAULT_PROBLEM, tmp_path)
    assert mine.name == defn.name and [w.uuid for w in mine_workloads] == [w.uuid for w in workloads[:2]]
    assert mine_root == tmp_path.resolve() and mine_root.is_absolute()
    with pytest.raises(SpecError, match="no definition named 'nope'"):
        resolve_problem("nope", tmp_path)
