"""The candidate workspace and its SEARCH/REPLACE patches: a block that does not match
exactly once is an error naming it, and a patch applies entirely or not at all."""

from __future__ import annotations

import pytest

from solforge.agent.workspace import PatchError, Workspace, WorkspaceError, apply_blocks, parse_patch
from solforge.spec import Solution, SourceFile

KERNEL = """import torch


def run(x):
    y = x * 2
    return y
"""


def _solution(content: str = KERNEL) -> Solution:
    return Solution.model_validate({
        "name": "base", "definition": "d", "spec": {"language": "pytorch", "entry_point": "kernel.py::run", "destination_passing_style": False},
        "sources": [SourceFile(path="kernel.py", content=content)],
    })  # fmt: skip


def _block(path: str, search: str, replace: str) -> str:
    return f"{path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


@pytest.fixture
def ws():
    w = Workspace.create(_solution())
    yield w
    w.cleanup()


def test_a_matching_block_replaces_exactly_those_lines(ws):
    assert ws.apply_patch(_block("kernel.py", "    y = x * 2", "    y = x + x")) == ["kernel.py"]
    assert ws.read("kernel.py") == KERNEL.replace("x * 2", "x + x")


def test_blocks_apply_in_order_and_can_create_files(ws):
    patch = _block("kernel.py", "    y = x * 2", "    y = helper(x)") + \
        _block("kernel.py", "import torch", "import torch\nfrom helper import helper") + \
        _block("helper.py", "", "def helper(x):\n    return x * 2")
    assert ws.apply_patch("Here is my edit:\n" + patch) == ["helper.py", "kernel.py"]
    assert "from helper import helper" in ws.read("kernel.py") and "y = helper(x)" in ws.read("kernel.py")
    assert ws.read("helper.py") == "def helper(x):\n    return x * 2\n"
    assert ws.files() == ["helper.py", "kernel.py"]
    sol = ws.solution("child", "agent")
    assert [s.path for s in sol.sources] == ["helper.py", "kernel.py"]
    assert sol.spec.entry_point == "kernel.py::run" and sol.name == "child"


def test_no_match_is_an_error_and_changes_nothing(ws):
    patch = _block("kernel.py", "    y = x * 2", "    y = x + x") + _block("kernel.py", "    y = x * 3", "    z = 1")
    with pytest.raises(PatchError, match=r"block 2 \(kernel.py\): SEARCH does not match.*line 5"):
        ws.apply_patch(patch)
    assert ws.read("kernel.py") == KERNEL  # block 1 matched, but the patch is all or nothing


def test_whitespace_and_partial_lines_do_not_match(ws):
    with pytest.raises(PatchError, match="does not match"):
        ws.apply_patch(_block("kernel.py", "  y = x * 2", "  y = 0"))  # two spaces, not four
    with pytest.raises(PatchError, match="does not match"):
        ws.apply_patch(_block("kernel.py", "    y = x *", "    y = 0"))  # not a whole line


def test_a_block_matching_twice_is_an_error():
    w = Workspace.create(_solution("a = 1\nb = 2\na = 1\n"))
    try:
        with pytest.raises(PatchError, match="matches 2 times"):
            w.apply_patch(_block("kernel.py", "a = 1", "a = 3"))
        w.apply_patch(_block("kernel.py", "a = 1\nb = 2", "a = 3\nb = 2"))  # made unique by context
        assert w.read("kernel.py") == "a = 3\nb = 2\na = 1\n"
    finally:
        w.cleanup()


def test_malformed_patches_are_errors(ws):
    with pytest.raises(PatchError, match="no SEARCH/REPLACE block"):
        ws.apply_patch("just some text")
    with pytest.raises(PatchError, match="expected '=======' and then '>>>>>>> REPLACE'"):
        ws.apply_patch("kernel.py\n<<<<<<< SEARCH\nx\n")
    with pytest.raises(PatchError, match="must name the file"):
        ws.apply_patch("<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n")
    with pytest.raises(PatchError, match="no such file"):
        ws.apply_patch(_block("other.py", "x", "y"))
    with pytest.raises(PatchError, match="kernel.py exists"):
        ws.apply_patch(_block("kernel.py", "", "x = 1"))


def test_paths_stay_inside_the_workspace(ws):
    for bad in ("../escape.py", "/etc/passwd", ".hidden.py", "a/../../b.py"):
        with pytest.raises(WorkspaceError):
            ws.write(bad, "x")
    with pytest.raises(PatchError, match="block 1"):
        ws.apply_patch(_block("../x.py", "", "x = 1"))
    assert not (ws.root.parent / "escape.py").exists()


def test_parse_patch_keeps_the_lines_verbatim():
    (b,) = parse_patch(_block("k.py", "  a\n\tb", "c\n"))
    assert (b.path, b.search, b.replace) == ("k.py", "  a\n\tb", "c\n")
    assert apply_blocks({"k.py": "x\n  a\n\tb\ny\n"}, [b]) == {"k.py": "x\nc\n\ny\n"}
