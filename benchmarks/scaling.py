"""Does search throughput grow with evaluation workers? Issue 14's goal: >= 0.9x linear
scaling up to 8 workers on Ray, no candidate lost or evaluated twice.

Two measurements, both through the real controller, operators (tune, seed) and
`RayEvaluator` on Ray in local mode:
1. sleep-bound: each evaluation sleeps `--sleep-s` seconds (an evaluation of known
   cost; this machine has 2 cores, so real kernels cannot show 8-way scaling), with 1, 2,
   4 and 8 actors (`ray.init(num_cpus=8)`: logical slots, the actors only sleep);
   `--per-worker` candidates per actor, so each configuration runs the same time if it
   scales. Every evaluation appends the candidate's name to a log: "lost" is a candidate
   the archive does not hold evaluated, "twice" a name evaluated more than once.
2. real CPU evaluations (`HarnessBackend`, the harness's default CPU timing) at 1 and 2
   actors on rmsnorm_h4096's smoke workloads: the harness's own cost, on a machine shared
   with other work (two evaluations at once also share its two cores).

candidates/min = evaluated candidates / the search's wall time (first proposal to last
result; the actors' start and the baselines are before it) x 60; efficiency =
candidates/min / (workers x the 1-worker figure). Each configuration has a limit
(`--limit-s`): past it the evaluations in flight are abandoned (the actors killed), and
the row's stop column says so, with what was evaluated by then.

    .venv/bin/python benchmarks/scaling.py [--sleep-s 1.0] [--per-worker 8] [--real 8] [--limit-s 600]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

PROBLEM = "rmsnorm_h4096"


class SleepBackend:
    """An evaluation of known cost: sleeps, then scores the candidate by its parameters."""

    compile_only = False

    def __init__(self, definition, sleep_s: float, log: Path) -> None:
        self.definition, self.sleep_s, self.log = definition, sleep_s, log

    def prepare(self) -> None:
        pass

    def measure_baselines(self, workloads, names, device):
        return {"eager": {}}, {}

    def evaluate(self, request, device, baselines):
        from solforge.spec import Environment, Evaluation, EvaluationExtension, Performance, SolReport, Trace

        time.sleep(self.sleep_s)
        with open(self.log, "a") as f:
            f.write(request.solution.name + "\n")
        digest = hashlib.sha256(request.solution.sources[0].content.encode()).digest()
        score = 0.2 + int.from_bytes(digest[:2], "little") / 2**16 / 2  # a fixed function of the source
        return [Trace(definition=self.definition.name, workload=w, solution=request.solution.name,
                      evaluation=Evaluation(status="PASSED", environment=Environment(hardware="sleep"),
                                            timestamp="2026-01-01T00:00:00Z",
                                            performance=Performance(latency_ms=1 / score),
                                            solforge=EvaluationExtension(sol=SolReport(sol_time_ms=0.5,
                                                                                       sol_score=score))))
                for w in request.workloads]


def run(backend, workers: int, candidates: int, workloads, root: Path, name: str, limit_s: float) -> dict:
    from solforge.knowledge import seeds_for
    from solforge.problems import load_builtin
    from solforge.search import Archive, OperatorSetup, build_operators
    from solforge.search.config import EvolveConfig
    from solforge.search.controller import Controller
    from solforge.search.evaluator import EvaluationRequest, RayEvaluator

    definition, _ = load_builtin(PROBLEM)
    evaluator = RayEvaluator(backend, "cpu", address=None, workers=workers)
    evaluator.actor_pids()  # wait until every actor has started: the timing is of the search, not of Ray's start
    if isinstance(backend, SleepBackend):
        evaluator.baselines = {"eager": {}}
    else:
        evaluator.start()
        evaluator.measure_baselines(workloads, ["eager"])
    operators = ("tune", "seed")
    config = EvolveConfig(device="cpu", operators=operators, max_candidates=candidates, random_seed=0,
                          queue_size=2 * workers, retime=False)
    search = tuple(workloads)
    setup = OperatorSetup(definition=definition, device="cpu", language="numba", search_workloads=search,
                          evaluate=lambda s: evaluator.submit(EvaluationRequest(s, search)).result())
    archive = Archive.create(definition.name, device="cpu", strategy="lineage", operators=list(operators), seed=0,
                             runs_root=root, run_id=name)
    controller = Controller(definition, list(search), [], config, archive, evaluator,
                            build_operators(operators, setup), {k.name: k for k in seeds_for(definition, "numba")})
    controller.restore()

    def give_up() -> None:  # an evaluation that never returns would hold the benchmark forever
        controller.halt = f"benchmark limit of {limit_s:.0f} s: the evaluations in flight were abandoned"
        evaluator.close()  # kills the actors: their futures fail, the loop ends

    watchdog = threading.Timer(limit_s, give_up)
    watchdog.start()
    t0 = time.monotonic()
    reason = controller.run_search()
    wall = time.monotonic() - t0
    watchdog.cancel()
    evaluator.close()
    evaluated = len(archive.evaluated_ids())
    first_rounds = [sum(1 for r in archive.evaluations(c.id) if r.round_index == 0) for c in archive.candidates()]
    out = {"workers": workers, "evaluated": evaluated, "wall_s": wall, "per_min": evaluated / wall * 60,
           "stop": reason, "in_flight_left": len(archive.in_flight()), "dropped": len(archive.candidates()) - evaluated,
           "twice_in_archive": sum(1 for n in first_rounds if n > 1),
           "sound": sum(1 for c in archive.candidates() if c.sound),  # a scored, stable first round
           "verdicts": dict(collections.Counter(c.verdict or "none" for c in archive.candidates()))}
    archive.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleep-s", type=float, default=1.0)
    parser.add_argument("--per-worker", type=int, default=8)
    parser.add_argument("--sleep-workers", default="1,2,4,8", help="actor counts of the sleep-bound runs ('': skip)")
    parser.add_argument("--real", type=int, default=8, help="candidates per real-evaluation configuration (0: skip)")
    parser.add_argument("--real-workers", default="1,2", help="actor counts of the real runs")
    parser.add_argument("--limit-s", type=float, default=600.0,
                        help="per configuration: past it, the evaluations in flight are abandoned and the row says so")
    parser.add_argument("--out", type=Path, default=Path("bench-out/scaling.json"))
    args = parser.parse_args()
    import ray

    from solforge.problems import load_builtin

    definition, workloads = load_builtin(PROBLEM)
    smoke = [w for w in workloads if w.smoke and not w.held_out]
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="solforge-scaling-") as tmp:
            root = Path(tmp)
            for workers in (int(w) for w in args.sleep_workers.split(",") if w):
                log = root / f"sleep-{workers}.log"
                log.touch()
                r = run(SleepBackend(definition, args.sleep_s, log), workers, workers * args.per_worker, smoke, root,
                        f"sleep-{workers}", args.limit_s)
                names = collections.Counter(log.read_text().split())
                r.update(kind="sleep", evaluations_logged=sum(names.values()),
                         evaluated_twice=sum(1 for n in names.values() if n > 1),
                         lost=workers * args.per_worker - r["evaluated"])
                rows.append(r)
                print(json.dumps(r), flush=True)
            if args.real:
                from solforge.bench import BenchConfig
                from solforge.search.evaluator import HarnessBackend

                for workers in (int(w) for w in args.real_workers.split(",") if w):
                    backend = HarnessBackend(definition, BenchConfig(device="cpu"))
                    r = run(backend, workers, args.real, smoke, root, f"real-{workers}", args.limit_s)
                    r.update(kind="real", lost=args.real - r["evaluated"])
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    finally:
        ray.shutdown()
        table(rows, args.out)
    return 0


def table(rows: list[dict], out: Path) -> None:
    for kind in ("sleep", "real"):
        base = next((r for r in rows if r["kind"] == kind and r["workers"] == 1), None)
        for r in rows:
            if r["kind"] == kind and base:
                r["efficiency"] = r["per_min"] / (r["workers"] * base["per_min"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print("| evaluation | workers | candidates | wall s | candidates/min | x linear | lost | evaluated twice "
          "| verdicts | stop |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for r in rows:
        twice = r.get("evaluated_twice", r["twice_in_archive"])
        eff = f"{r['efficiency']:.2f}" if "efficiency" in r else "-"
        print(f"| {r['kind']} | {r['workers']} | {r['evaluated']} | {r['wall_s']:.1f} | {r['per_min']:.1f} | "
              f"{eff} | {r.get('lost', 0)} | {twice} | "
              f"{', '.join(f'{k} {v}' for k, v in sorted(r['verdicts'].items()))} | {r['stop']} |")


if __name__ == "__main__":
    sys.exit(main())
