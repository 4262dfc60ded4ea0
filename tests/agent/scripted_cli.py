"""A scripted stand-in for a coding-agent CLI (Claude Code, aider, ...), for the
agent-cli operator's tests. Usage: scripted_cli.py MODE WORKSPACE PROMPT_FILE [PIDFILE]

  edit  read the prompt, replace 1/sqrt with rsqrt in solution/kernel.py, run
        `python -m solforge.cli.eval .`, write RATIONALE.md, commit; exit 0
  hang  write its pid and a child's pid to PIDFILE, edit the source without testing it,
        then sleep far past any timeout
  noop  change nothing; exit 0
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main(mode: str, workspace: str, prompt_file: str, pidfile: str | None = None) -> int:
    root = Path(workspace)
    prompt = Path(prompt_file).read_text()
    if "solution/" not in prompt or "solforge eval ." not in prompt:
        print("the prompt does not say where the sources are or how to test them")
        return 3
    kernel = root / "solution" / "kernel.py"
    if mode == "noop":
        return 0
    text = kernel.read_text()
    edited = text.replace("inv_rms = 1.0 / torch.sqrt(mean_square + 1e-5)", "inv_rms = torch.rsqrt(mean_square + 1e-5)")
    if edited == text:
        print("kernel.py does not hold the expected line")
        return 4
    if mode == "hang":
        child = subprocess.Popen(["sleep", "300"])
        Path(pidfile).write_text(f"{child.pid}\n")
        kernel.write_text(edited)
        time.sleep(300)
        return 0
    kernel.write_text(edited)
    result = subprocess.run([sys.executable, "-m", "solforge.cli.eval", "."], cwd=root, capture_output=True, text=True)
    print(result.stdout, result.stderr)
    print(f"eval exit code {result.returncode}")
    (root / "RATIONALE.md").write_text("rsqrt replaces 1/sqrt: one division fewer per row\n")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "use rsqrt"], cwd=root)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
