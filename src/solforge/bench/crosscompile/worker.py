"""The child process of `cross_compile(isolate=True)`: `python -m solforge.bench.crosscompile.worker DIR`.

Reads definition.json, solution.json, workloads.json and request.json from DIR, compiles
in this process, and writes result.json: {"reports": [...]} or {"error": {kind, message,
kernel, workload, target}}. Any other failure leaves no result.json; the parent reports
the exit code and the log.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(work: Path) -> int:
    from solforge.bench.crosscompile.report import CrossCompileError
    from solforge.bench.crosscompile.triton import compile_triton
    from solforge.hardware.targets import target_by_name
    from solforge.spec import Solution, Workload, load_definition

    definition = load_definition(work / "definition.json")
    solution = Solution.model_validate_json((work / "solution.json").read_text())
    workloads = [Workload.model_validate(w) for w in json.loads((work / "workloads.json").read_text())]
    request = json.loads((work / "request.json").read_text())
    root = Path(request["dataset_root"]) if request["dataset_root"] else None
    try:
        reports = compile_triton(solution, definition, workloads, target_by_name(request["target"]), root)
        result = {"reports": [r.model_dump(mode="json") for r in reports]}
    except CrossCompileError as exc:
        result = {"error": {"kind": exc.kind, "message": exc.message, "kernel": exc.kernel,
                            "workload": exc.workload, "target": exc.target}}  # fmt: skip
    (work / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
