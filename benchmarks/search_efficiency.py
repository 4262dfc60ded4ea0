"""Does evolution beat sampling at equal budget? Issue 15's proof (OpenEvolve #100: a
search that cannot show it beats best-of-N sampling is decoration).

At candidate budgets 20, 50 and 100, on every problem whose numba seeds were all
measured by `benchmarks/tuner_efficiency.py --measure`, with 3 random seeds each, three
searches are run by the real controller, strategies and operators (tune, crossover,
seed):
- `lineage` with the model-based tune (Optuna TPE over the archive's history);
- `map-elites` with the same tune;
- `best-of-n`: N independent samples of the same operators (no selection, no history).

The objective is replayed: a candidate's fitness is the one its parameter point measured
with the harness in the tuner benchmark's table (every point of every seed, one timing
each, on the search workloads `solforge evolve` chooses on this CPU). Every candidate
these operators make is such a point, so a replay runs the whole search in seconds
instead of the hours 4,500 harness evaluations take on this machine, and every method
is judged against the same figures. Time is the table's: the measured evaluation seconds
of the points a run evaluated (and re-timed), summed in order. Re-timing is off unless
`--retime` (below); runs are in lockstep, so each is reproducible.

`--in-flight 3` replays a run as `solforge evolve` makes it on the CPU, where the harness
builds the next two candidates while one is judged: three candidates in flight, each
proposed while the two before it are still pending (the tuner sees them as pending
points), results taken in the order submitted (`EvolveConfig.lockstep_in_flight`).
`--in-flight 1` (the default) proposes each candidate after the previous result. The
replayed seconds are summed one after another at any `--in-flight`: the overlap of a
build ahead with a timing is not counted, so at 3 they overstate a run's wall time.

Reported per problem, budget and method (mean over the 3 seeds): the best fitness
within the budget; the candidates and the (replayed) seconds to reach 95% of that
budget's best; the fraction of candidates with a parent that beat their best parent;
for lineage and map-elites, the difference of their mean best fitness to best-of-N's,
with twice its standard error over the seeds (a difference inside it is the luck of the
draws, not a method beating another).

`--point-figure best` replays each point at the best of its timings (a table measured
with `--timings 3`) instead of their median: on a machine whose other work now and then
slows a timing (a 2-vCPU VM, where a parallel kernel's second thread competes with the
harness), the median of three is still a slowed figure whenever two were, and a search
judged on such a table is judged partly on which points had the bad luck.

`--retime` replays a run as `solforge evolve` judges one: each evaluation of a point
draws that point's next measured timing (the first from a timing chosen by the search
seed), with the verdict the harness gave that timing; an unstable figure is not
selected on, and a would-be new best or an unstable figure is timed again (the next
timing), as the controller does. A method is then scored on the table figure (per
`--point-figure`) of the candidate it holds best, the highest fitness among its sound
ones: a search is judged on what it picked, not on the luck of a timing it drew. Without
`--retime` every evaluation of a point gets the table figure, always sound.

The tables this script replays by default are kept in git, under
benchmarks/data/search_tables/measured (`--tables` for others): those of the problems
measured since the eleventh session, so that a figure in docs/measurements.md can be
replayed from a fresh clone. Earlier sessions' tables were kept outside the repository
and are lost; their figures stand as recorded.

`--search-seeds N` runs N random seeds per (problem, method) instead of 3 (the issue's
minimum): a mean over 3 seeds on a space larger than the budget is largely the luck of
those 3 draws; more seeds cost only replay time. `--first-seed K` starts them at K, so
that a change to the search can be tried on seeds apart from the ones reported.

`--operators tune` runs every method with the tune operator alone (the default is tune,
crossover and seed, as `solforge evolve` runs on the CPU): the search's own edge, apart
from the operators the supervisor mixes in. Best-of-N's tune, with no history, then
draws uniformly from the family of the seed's default point only.

    .venv/bin/python benchmarks/search_efficiency.py [--tables benchmarks/data/search_tables] [--out bench-out/search]
        [--search-seeds 3] [--first-seed 0] [--in-flight 1] [--point-figure median] [--retime]
        [--operators tune,crossover,seed] [--problems rmsnorm_h4096,...]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

TABLES = Path(__file__).parent / "data" / "search_tables"  # the measured tables kept in git
BUDGETS = (20, 50, 100)
SEEDS = (0, 1, 2)
METHODS = ("lineage", "map-elites", "best-of-n")


class TableBackend:
    """An evaluator backend whose fitness is the measured table's (see the module docstring)."""

    compile_only = False

    def __init__(self, definition, tables: dict[str, dict], in_flight: int = 1, draw: int | None = None) -> None:
        from types import SimpleNamespace

        self.definition = definition
        self.tables = tables  # seed name -> its measured table
        # the evaluator's capacity: 1, or 3 with the harness's build-ahead (`LocalEvaluator`)
        self.config = SimpleNamespace(build_ahead=in_flight > 1)
        self.draw = draw  # None: every evaluation of a point gets its table figure; else the seed of `timing`
        self.served: dict[tuple[str, str], list[float]] = {}  # (seed, point) -> the seconds of each evaluation

    def prepare(self) -> None:
        pass

    def measure_baselines(self, workloads, names, device):
        return {"eager": {}}, {}

    def evaluate(self, request, device, baselines):
        from solforge.knowledge import read_params, seeds_for
        from solforge.spec import (
            Environment,
            Evaluation,
            EvaluationExtension,
            Performance,
            SolReport,
            TimingStats,
            Trace,
        )

        source = request.solution.sources[0]
        seed = next(k for k in seeds_for(self.definition, "numba") if k.entry_file == source.path)
        params = read_params(source.content)
        point = self.point(seed.name, params)
        fitness, verdict, seconds = self.timing(seed.name, params)
        self.served.setdefault((seed.name, json.dumps(params, sort_keys=True)), []).append(seconds)
        traces = []
        for i, w in enumerate(request.workloads):
            if fitness > 0:
                # an unstable timing: one workload's figure flagged as the harness flags it
                timing = (TimingStats(method="replay", median_ms=1.0 / fitness, iqr_ms=0.0, min_ms=1.0 / fitness,
                                      count=1, unstable=True) if verdict == "unstable" and i == 0 else None)
                ev = Evaluation(status="PASSED", environment=Environment(hardware="replay"),
                                timestamp="2026-01-01T00:00:00Z", performance=Performance(latency_ms=1.0 / fitness),
                                solforge=EvaluationExtension(sol=SolReport(sol_time_ms=0.5, sol_score=fitness),
                                                             timing=timing))
            else:
                ev = Evaluation(status="RUNTIME_ERROR", environment=Environment(hardware="replay"),
                                timestamp="2026-01-01T00:00:00Z", log=f"measured: {point['reason']}")
            traces.append(Trace(definition=self.definition.name, workload=w, solution=request.solution.name,
                                evaluation=ev))
        return traces

    def point(self, seed_name: str, params: dict) -> dict:
        """The table's entry of a parameter point: {fitness, seconds, ...}."""
        return self.tables[seed_name]["points"][json.dumps(params, sort_keys=True)]

    def timing(self, seed_name: str, params: dict) -> tuple[float, str, float]:
        """(fitness, verdict, seconds) of the point's next evaluation. Without `draw`: the
        table's figure, always scored. With it: the point's measured timings in turn, from
        one chosen by `draw` (so each search seed starts a point at its own timing, and a
        re-timing gets the next one), each with the verdict the harness gave it."""
        point = self.point(seed_name, params)
        key = json.dumps(params, sort_keys=True)
        if self.draw is None:
            return point["fitness"], "scored" if point["fitness"] > 0 else "failed", point["seconds"]
        fitnesses = point.get("fitnesses") or [point["fitness"]]
        verdicts = point.get("verdicts") or [point["verdict"]] * len(fitnesses)
        seconds = point.get("seconds_each") or [point["seconds"]] * len(fitnesses)
        start = random.Random(f"{self.draw}/{seed_name}/{key}").randrange(len(fitnesses))
        i = (start + len(self.served.get((seed_name, key), []))) % len(fitnesses)
        return fitnesses[i], verdicts[i], seconds[i]


def _problems(tables_dir: Path) -> dict[str, dict[str, dict]]:
    """definition name -> {seed name -> table}, for definitions whose every numba seed is measured."""
    from solforge.knowledge import seeds_for
    from solforge.problems import load_builtin

    tables = [json.loads(p.read_text()) for p in sorted((tables_dir / "measured").glob("*.json"))]
    by_def: dict[str, dict[str, dict]] = {}
    for t in tables:
        size = math.prod(len(v) for v in _seed(t["seed"]).param_space.values())
        if len(t.get("points", {})) == size:
            by_def.setdefault(t["definition"], {})[t["seed"]] = t
    out = {}
    for name, seeds in by_def.items():
        definition, _ = load_builtin(name)
        if {k.name for k in seeds_for(definition, "numba")} <= set(seeds):
            out[name] = seeds
    return out


def _seed(name: str):
    from solforge.knowledge import load_seeds

    return next(s for s in load_seeds("numba") if s.name == name)


def default_operators() -> tuple[str, ...]:
    """The variation operators `solforge evolve` runs when no LLM is configured (the
    operator registry's default set): those a table can replay."""
    from solforge.search.operators import OperatorOptions, choose_operators

    return choose_operators(None, OperatorOptions())[0]


def replay(definition_name: str, tables: dict[str, dict], method: str, seed: int, budget: int,
           root: Path, in_flight: int = 1, retime: bool = False,
           operators: tuple[str, ...] | None = None) -> list[dict]:  # fmt: skip
    """Run the real controller against the tables; the evaluated candidates in order:
    {fitness as the search holds it, whether it is sound, the point's table figure,
    parents' best fitness or None, seconds, operator}. `in_flight` candidates are evaluated
    at once (each proposed knowing the others are pending; results taken in the order
    submitted). `retime`: as `solforge evolve` runs, a would-be new best (or an unstable
    figure) is timed again, and each evaluation of a point draws its next measured timing
    with its verdict (`TableBackend.timing`)."""
    from solforge.knowledge import seeds_for
    from solforge.problems import load_builtin
    from solforge.search import Archive, OperatorSetup, build_operators
    from solforge.search.config import EvolveConfig
    from solforge.search.controller import Controller
    from solforge.search.evaluator import EvaluationRequest, LocalEvaluator
    from solforge.search.workloads import choose_workloads

    definition, workloads = load_builtin(definition_name)
    choice = choose_workloads(definition, workloads, "cpu")
    backend = TableBackend(definition, tables, in_flight, draw=seed if retime else None)
    evaluator = LocalEvaluator(backend, ["cpu"])
    if evaluator.capacity < in_flight:
        raise SystemExit(f"--in-flight {in_flight}: the evaluator keeps at most {evaluator.capacity} in flight")
    evaluator.baselines = {"eager": {}}
    operators = operators or default_operators()
    strategy = method
    # cache=False: no dedup key beyond the parameter point (every candidate here is one)
    config = EvolveConfig(device="cpu", strategy=strategy, operators=operators, max_candidates=budget,
                          random_seed=seed, retime=retime, lockstep=True, lockstep_in_flight=in_flight, cache=False)
    search = tuple(choice.search)
    setup = OperatorSetup(definition=definition, device="cpu", language="numba", search_workloads=search,
                          evaluate=lambda s: evaluator.submit(EvaluationRequest(s, search)).result())
    archive = Archive.create(definition.name, device="cpu", strategy=strategy, operators=list(operators), seed=seed,
                             runs_root=root, run_id=f"{definition_name}-{method}-{seed}")
    controller = Controller(definition, list(search), [], config, archive, evaluator,
                            build_operators(operators, setup), {k.name: k for k in seeds_for(definition, "numba")})
    controller.restore()
    controller.run_search()
    fitness = {c.id: c.fitness for c in archive.candidates() if c.fitness is not None}
    records = []
    for h in archive.history():
        c = archive.candidate(h.candidate_id)
        parents = [fitness[p] for p in c.parent_ids if p in fitness]
        point = dict(c.parameters)
        served = backend.served[(c.family, json.dumps(point, sort_keys=True))]  # family: the seed's name
        records.append({"fitness": h.fitness, "sound": c.sound, "figure": backend.point(c.family, point)["fitness"],
                        "parent_best": max(parents) if parents else None, "seconds": sum(served),
                        "operator": c.operator, "family": c.family, "params": point})
    archive.close()
    evaluator.close()
    return records


def metrics(records: list[dict], budget: int) -> dict:
    """Of the first `budget` candidates: `best`, the table figure of the candidate the
    search holds best (the highest fitness among its sound ones: with `--retime` a search
    sees one timing or two of a point, and is judged on what it picked, not on a lucky
    draw); the candidates and seconds until that reached 95% of its final value; the
    fraction of candidates with a parent that beat their best parent."""
    head = records[:budget]

    def chosen(rs: list[dict]) -> float:
        sound = [r for r in rs if r["sound"]]
        return max(sound, key=lambda r: r["fitness"])["figure"] if sound else 0.0

    best = chosen(head)
    t, reached_n, reached_s = 0.0, None, None
    for i, r in enumerate(head):
        t += r["seconds"]
        if reached_n is None and best > 0 and chosen(head[:i + 1]) >= 0.95 * best:
            reached_n, reached_s = i + 1, t
    with_parent = [r for r in head if r["parent_best"] is not None]
    improved = sum(1 for r in with_parent if r["fitness"] > r["parent_best"])
    return {"evaluated": len(head), "best": best, "to95_n": reached_n, "to95_s": reached_s,
            "improved": improved / len(with_parent) if with_parent else None}


def _difference(ours: list[float], theirs: list[float]) -> str:
    """The difference of the two means, and twice its standard error (the runs of the two
    methods are independent draws; a difference inside it is the luck of the seeds)."""
    diff = statistics.fmean(ours) - statistics.fmean(theirs)
    if min(len(ours), len(theirs)) < 2:
        return f"{diff:+.4f}"
    se = math.sqrt(statistics.variance(ours) / len(ours) + statistics.variance(theirs) / len(theirs))
    return f"{diff:+.4f} ({2 * se:.4f})"


def main() -> int:
    replayable = default_operators()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=Path, default=TABLES,
                        help="a folder whose measured/ holds tuner_efficiency's tables (default: the ones kept in git)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/search"))
    parser.add_argument("--search-seeds", type=int, default=len(SEEDS), help="random seeds per problem and method")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first random seed (seeds first-seed .. first-seed + search-seeds - 1); e.g. seeds "
                             "kept apart for trying changes to the search, so that the reported ones are not those "
                             "it was tried on")
    parser.add_argument("--point-figure", choices=("median", "best"), default="median",
                        help="a point's fitness: the table's (the median of its timings), or the best of them")
    parser.add_argument("--in-flight", type=int, default=1, choices=(1, 2, 3),
                        help="candidates evaluated at once: 1, or 3 as `solforge evolve` keeps on the CPU "
                             "(build-ahead): each proposed knowing the others are pending, results taken in order")
    parser.add_argument("--retime", action="store_true",
                        help="replay as `solforge evolve` judges: each evaluation of a point draws its next measured "
                             "timing with that timing's verdict, and a would-be new best or an unstable figure is "
                             "timed again; a method is scored on the table figure of the candidate it holds best")
    parser.add_argument("--operators", default=",".join(replayable),
                        help="comma-separated variation operators of every method (default: %(default)s, as "
                             "`solforge evolve` runs on the CPU); e.g. tune alone, to see the tuner's own edge")
    parser.add_argument("--problems", default=None, help="comma-separated definition names (default: every one "
                                                         "whose tables are complete)")
    args = parser.parse_args()
    operators = tuple(o.strip() for o in args.operators.split(",") if o.strip())
    unknown = [o for o in operators if o not in replayable]
    if unknown or not operators:
        print(f"--operators: expected some of {', '.join(replayable)} (the operators a table can replay), got "
              f"{args.operators!r}", file=sys.stderr)
        return 2
    problems = _problems(args.tables)
    if args.point_figure == "best":  # the fastest of a point's timings: interference only ever slows one
        for tables in problems.values():
            for t in tables.values():
                for point in t["points"].values():
                    point["fitness"] = max(point.get("fitnesses") or [point["fitness"]])
    if args.problems:
        wanted = args.problems.split(",")
        missing = [p for p in wanted if p not in problems]
        if missing:
            print(f"--problems: no complete tables under {args.tables}/measured for {', '.join(missing)} "
                  f"(complete: {', '.join(sorted(problems)) or 'none'})", file=sys.stderr)
            return 2
        problems = {p: problems[p] for p in wanted}
    if not problems:
        print(f"no complete tables under {args.tables}/measured: run benchmarks/tuner_efficiency.py --measure",
              file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="solforge-search-efficiency-") as tmp:
        for name, tables in sorted(problems.items()):
            space = sum(math.prod(len(v) for v in _seed(s).param_space.values()) for s in tables)
            table_best = max(p["fitness"] for t in tables.values() for p in t["points"].values())
            for method in METHODS:
                runs = []
                for seed in range(args.first_seed, args.first_seed + args.search_seeds):
                    t0 = time.monotonic()
                    runs.append(replay(name, tables, method, seed, max(BUDGETS), Path(tmp), args.in_flight,
                                       args.retime, operators))
                    print(f"  {name} {method} seed {seed}: {len(runs[-1])} evaluated in "
                          f"{time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
                for budget in BUDGETS:
                    ms = [metrics(r, budget) for r in runs]
                    mean = lambda key: statistics.fmean(m[key] for m in ms if m[key] is not None)  # noqa: E731
                    present = lambda key: [m[key] for m in ms if m[key] is not None]  # noqa: E731
                    rows.append({"problem": name, "space": space, "table_best": table_best, "method": method,
                                 "budget": budget, "evaluated": [m["evaluated"] for m in ms],
                                 "best": mean("best"), "best_each": [m["best"] for m in ms],
                                 "to95_n": mean("to95_n") if present("to95_n") else None,
                                 "to95_s": mean("to95_s") if present("to95_s") else None,
                                 "improved": mean("improved") if present("improved") else None})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_efficiency.json").write_text(json.dumps(rows, indent=1))
    print(f"| problem (points) | budget | method | evaluated ({args.search_seeds} seeds) | best fitness (mean) "
          "| to 95%: candidates "
          "| to 95%: s (replayed) | improved on parent | beats best-of-N | difference (2 s.e.) |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |")
    for r in rows:
        base = next(x for x in rows if x["problem"] == r["problem"] and x["budget"] == r["budget"]
                    and x["method"] == "best-of-n")
        beats = "-" if r["method"] == "best-of-n" else ("yes" if r["best"] > base["best"] + 1e-12 else
                                                      ("tie" if abs(r["best"] - base["best"]) <= 1e-12 else "no"))
        fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        print(f"| {r['problem']} ({r['space']}) | {r['budget']} | {r['method']} | "
              f"{', '.join(str(n) for n in r['evaluated'])} | {r['best']:.4f} | {fmt(r['to95_n'], '.1f')} | "
              f"{fmt(r['to95_s'], '.0f')} | {fmt(r['improved'], '.0%')} | {beats} | "
              f"{'-' if r['method'] == 'best-of-n' else _difference(r['best_each'], base['best_each'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
