"""`solforge evolve` with the agentic operators: the LLM agent against a loopback
OpenAI-compatible server driven by the real `openai` client, and an external coding-agent
CLI; and the one-line notice when no LLM is configured."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from search_support import FAST_BENCH, small_problem, write_dataset

import solforge.agent  # noqa: F401 - registers the agent operators, as the solforge command does
from solforge.cli import main
from solforge.search import Archive
from solforge.search.config import EvolveConfig
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
def env(tmp_path, monkeypatch, cache_dir):
    empty = tmp_path / "llm.toml"  # no provider settings: the SDKs' environment variables apply
    empty.write_text("")
    monkeypatch.setenv("SOLFORGE_LLM_CONFIG", str(empty))
    return tmp_path


@pytest.mark.slow
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
    definition, workloads = small_problem()
    with servers.OpenAIServer(script) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "loopback")
        config = EvolveConfig(device="cpu", operators=("agent",), llm=("openai:scripted-model",), max_candidates=1,
                              runs_root=env / "runs", bench=FAST_BENCH)
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
        assert archive.candidate_usage(c.id).llm_input_tokens == 300  # the step's cost is its candidate's
        notes = archive.notes(candidate_id=c.id)
        assert any("prange over row chunks" in n.text for n in notes)
        assert any(n.text.startswith("agent step with openai:scripted-model: submitted after 3 turn(s)") for n in notes)


@pytest.mark.slow
def test_evolve_with_an_external_agent_cli(env):
    definition, workloads = small_problem()
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
                          agent_timeout_s=300, max_candidates=1, runs_root=env / "runs", bench=FAST_BENCH)
    result = evolve(definition, workloads, config)
    with Archive.open(result.run_dir, read_only=True) as archive:
        (c,) = archive.candidates()
        assert c.operator == "agent-cli" and '"PARALLEL": True,' in c.solution.sources[0].content
        assert c.fitness > 0


@pytest.mark.slow
def test_without_an_llm_evolve_says_so_in_one_line_and_runs_the_llm_free_operators(env, capsys, monkeypatch):
    monkeypatch.chdir(env)
    dataset = write_dataset(env / "dataset")
    code = main(["evolve", "rmsnorm_h4096", "--dataset", str(dataset), "--device", "cpu", "--operators",
                 "agent,tune,seed", "--max-candidates", "2", "--runs-root", str(env / "runs")])
    out = capsys.readouterr().out
    assert code == 0, out
    notice = [line for line in out.splitlines() if line.startswith("no LLM configured")]
    assert notice == ["no LLM configured (--llm openai:MODEL or anthropic:MODEL): running tune, seed"]
    (run_dir,) = (env / "runs").iterdir()
    with Archive.open(run_dir, read_only=True) as archive:
        assert {c.operator for c in archive.candidates()} <= {"tune", "seed"}
        assert archive.run.operators == ("tune", "seed")
