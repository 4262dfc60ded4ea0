"""The children's lives end with the judge's: after the controller dies by any signal,
no process it started is left (the kill tests look for orphans and fail on any).

Each test starts `solforge bench` in a session of its own (setsid) on a solution that
loops forever, waits until the solution's process is running, ends the controller with
one signal, then lists every process still in that session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

LOOP = "def run(hidden_states, weight):\n    while True:\n        pass\n"
SETTLE_S = 20.0  # how long a dead controller's children get to go


def session_members(sid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process of session `sid` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            state, session = fields[0], int(fields[3])
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if session == sid and state != "Z":
            found.append((int(entry), cmd.strip()))
    return found


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    except (OSError, ValueError, IndexError):
        return 0


def looping_child(sid: int, cli_pid: int) -> bool:
    """Whether a process of the session other than the CLI burns CPU steadily (the loop:
    more than 0.5 s of CPU in one second of wall clock)."""
    before = {pid: cpu_ticks(pid) for pid, _ in session_members(sid) if pid != cli_pid}
    time.sleep(1.0)
    tick = os.sysconf("SC_CLK_TCK")
    return any(cpu_ticks(pid) - ticks > 0.5 * tick for pid, ticks in before.items())


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL-group", "SIGKILL", "SIGTERM", "SIGHUP", "SIGINT"])
def test_no_process_outlives_the_controller(how, tmp_path):
    loop = tmp_path / "loop.py"
    loop.write_text(LOOP)
    cli = [sys.executable, "-c", "from solforge.cli import console_main; console_main()", "bench",
           "rmsnorm_h4096", "-s", str(loop), "--device", "cpu", "--baselines", "", "--timeout", "600"]
    proc = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    sid = proc.pid
    try:
        deadline = time.monotonic() + 300
        while not looping_child(sid, proc.pid):
            assert proc.poll() is None, "the CLI ended before its solution started"
            assert time.monotonic() < deadline, f"no solution process got busy: {session_members(sid)}"
            time.sleep(0.5)
        if how == "SIGKILL-group":
            os.killpg(sid, signal.SIGKILL)
        else:
            os.kill(proc.pid, getattr(signal, how))
        proc.wait(timeout=120)
        deadline = time.monotonic() + SETTLE_S
        while session_members(sid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = session_members(sid)
        assert left == [], f"orphans after {how}: {left}"
    finally:
        for pid, _ in session_members(sid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_the_template_outlives_the_thread_that_started_it(tmp_path):
    # The template process is started by whichever thread of the judge first needs it
    # (a search's evaluator thread, say); it must serve the judge after that thread ends.
    script = (
        "import threading\n"
        "from pathlib import Path\n"
        "from solforge.bench import BenchConfig, TimingBudget, evaluate\n"
        "from solforge.spec import BuildSpec, Solution, SourceFile, Workload, load_definition\n"
        f"kernels = Path({str(Path(__file__).parent / 'kernels')!r})\n"
        "d = load_definition(kernels / 'rmsnorm_small.json')\n"
        "s = Solution(name='h', definition=d.name, spec=BuildSpec(language='pytorch', "
        "entry_point='honest_rmsnorm.py::run', destination_passing_style=False), "
        "sources=[SourceFile(path='honest_rmsnorm.py', content=(kernels / 'honest_rmsnorm.py').read_text())])\n"
        "c = BenchConfig(timing=TimingBudget(warmup_s=0.0, max_time_s=0.2, max_iters=5, min_iters=5))\n"
        "w = [Workload(uuid='e', axes={'T': 5})]\n"
        "out = []\n"
        "t = threading.Thread(target=lambda: out.append(evaluate(d, w, s, 'cpu', c)[0].evaluation.status.value))\n"
        "t.start(); t.join()\n"
        "out.append(evaluate(d, w, s, 'cpu', c)[0].evaluation.status.value)\n"
        "print(out)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.stdout.strip().endswith("['PASSED', 'PASSED']"), proc.stdout + proc.stderr[-3000:]
