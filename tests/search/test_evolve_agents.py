"""`solforge evolve` with the agentic operators: the LLM agent against a loopback
OpenAI-compatible server driven by the real `openai` client, and an external coding-agent
CLI; and the one-line notice when no LLM is configured."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from solforge.bench import BenchConfig
from solforge.cli import main
from solforge.problems import load_builtin
from solforge.search import Archive
from solforge.search.controller import EvolveConfig
from solforge.search.evolve import evolve

AGENT_TESTS = Path(__file__).resolve().parents[1] / "agent"


def _servers():
    spec = importlib.util.spec_from_file_location("solforge_test_servers", AGENT_TESTS / "servers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _patch(path: str, search: str, replace: str) -> str:
    return f"{path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path / "cache"))
    empty = tmp_path / "llm.toml"  # no provider settings: the SDKs' environment variables apply
    empty.write_text("")
    monkeypatch.setenv("SOLFORGE_LLM_CONFIG", str(empty))
    return tmp_path


def test_evolve_with_the_agent_against_an_openai_compatible_server(env, monkeypatch):
    servers = _servers()
    # The agent starts from the least-tried numba seed, numba/rmsnorm_rows, edits one
    # parameter in its workspace, tests it with the real harness, and submits.
    script = [
        servers.openai_reply([("apply_patch", {"patch": _patch("rmsnorm_rows.py", '    "PARALLEL": False,',
                                                                '    "PARALLEL": True,')})], text="Rows in parallel."),
        servers.openai_reply([("evaluate", {})]),
        servers.openai_reply([("submit", {"rationale": "prange over row chunks: both cores busy"})]),
    ]
    definition, workloads = load_builtin("rmsnorm_h4096")
    with servers.OpenAIServer(script) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "loopback")
        config = EvolveConfig(device="cpu", operators=("agent",), llm=("openai:scripted-model",), max_candidates=1,
                              runs_root=env / "runs", bench=BenchConfig(device="cpu", flush_bytes=8 << 20))
        result = evolve(definition, workloads, config)
    assert len(srv.requests) == 3
    assert all(r.body["model"] == "scripted-model" for r in srv.requests)
    with Archive.open(result.run_dir, read_only=True) as archive:
        (c,) = archive.candidates()
        assert c.operator == "agent" and c.family == "numba/rmsnorm_rows"
        assert '"PARALLEL": True,' in c.solution.sources[0].content
        assert result.evaluated == 1 and c.fitness > 0
        usage = archive.totals().by_operator["agent"]
        assert usage.llm_input_tokens == 300 and usage.llm_output_tokens == 60
        assert any("prange over row chunks" in n.text for n in archive.notes())


def test_evolve_with_an_external_agent_cli(env):
    definition, workloads = load_builtin("rmsnorm_h4096")
    # a coding agent that turns the seed's parallel loop on, and tests its work with `solforge eval .`
    agent = env / "agent.py"
    agent.write_text(
        "import pathlib, subprocess, sys\n"
        "ws = pathlib.Path(sys.argv[1])\n"
        "(kernel,) = (ws / 'solution').glob('*.py')\n"
        "kernel.write_text(kernel.read_text().replace('\"PARALLEL\": False,', '\"PARALLEL\": True,'))\n"
        "sys.exit(subprocess.run([sys.executable, '-m', 'solforge.cli', 'eval', '.'], cwd=ws).returncode)\n"
    )
    config = EvolveConfig(device="cpu", operators=("agent-cli",), agent_cmd=f"{sys.executable} {agent} {{workspace}}",
                          agent_timeout_s=300, max_candidates=1, runs_root=env / "runs",
                          bench=BenchConfig(device="cpu", flush_bytes=8 << 20))
    result = evolve(definition, workloads, config)
    with Archive.open(result.run_dir, read_only=True) as archive:
        (c,) = archive.candidates()
        assert c.operator == "agent-cli" and '"PARALLEL": True,' in c.solution.sources[0].content
        assert c.fitness > 0


def test_without_an_llm_evolve_says_so_in_one_line_and_runs_the_llm_free_operators(env, capsys, monkeypatch):
    monkeypatch.chdir(env)
    code = main(["evolve", "rmsnorm_h4096", "--device", "cpu", "--operators", "agent,tune,seed",
                 "--max-candidates", "2", "--runs-root", str(env / "runs")])
    out = capsys.readouterr().out
    assert code == 0, out
    notice = [line for line in out.splitlines() if line.startswith("no LLM configured")]
    assert notice == ["no LLM configured (--llm openai:MODEL or anthropic:MODEL): running tune, seed"]
    (run_dir,) = (env / "runs").iterdir()
    with Archive.open(run_dir, read_only=True) as archive:
        assert {c.operator for c in archive.candidates()} <= {"tune", "seed"}
        assert archive.run.operators == ("tune", "seed")


def test_bad_evolve_input_is_one_line_with_a_nonzero_exit(env, capsys):
    assert main(["evolve", "rmsnorm_h4096", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip() == "solforge: give --budget (e.g. 10m) or --max-candidates N: a search needs a limit"
    assert main(["evolve", "rmsnorm_h4096", "--device", "cpu", "--budget", "ten minutes"]) == 2
    assert "--budget: expected a duration" in capsys.readouterr().err
    assert main(["evolve", "rmsnorm_h4069", "--device", "cpu", "--max-candidates", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown problem 'rmsnorm_h4069'" in err and "\n" not in err.strip()
    assert main(["evolve", "rmsnorm_h4096", "--device", "cpu", "--max-candidates", "1", "--resume", "nope"]) == 2
    assert "--resume nope: no such run" in capsys.readouterr().err
    assert os.environ.get("SOLFORGE_CACHE_DIR")  # the fixture isolated the calibration cache
