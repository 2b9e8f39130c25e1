"""`wsf`'s own time: imports and start-up, apart from the simulation (`python -m bench.startup`).

Each figure is the best of `REPEATS` fresh processes (wall seconds): `import abm.model`, `wsf
validate` of the baseline, and `wsf run` of the baseline for `STEPS` steps without and with
its report, beside the simulation time the run itself reports (`summary.json`
`wall_time_s`). What is left is imports, writing the folder and the report. Torch is imported
only by commands that train (`tests/test_cli_settings.py` checks the others).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.table import record

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "baseline.yaml"
REPEATS = 3
STEPS = 60


def best_wall(command: list[str], repeats: int = REPEATS, before=None) -> float:
    best = float("inf")
    for _ in range(repeats):
        if before is not None:
            before()
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    wsf = [sys.executable, "-m", "abm.cli"]
    load = os.getloadavg()[0]
    print(f"start-up, best of {REPEATS} fresh processes, load average {load:.1f} on "
          f"{os.cpu_count()} CPUs")
    imports = best_wall([sys.executable, "-c", "import abm.model"])
    validate = best_wall([*wsf, "validate", str(SCENARIO)])
    folder = Path(tempfile.mkdtemp(prefix="wsf-bench-startup-"))
    out = folder / "run"

    def clean() -> None:
        shutil.rmtree(out, ignore_errors=True)

    try:
        run = best_wall([*wsf, "run", str(SCENARIO), "--steps", str(STEPS), "--out", str(out),
                         "--no-report"], before=clean)
        simulated = json.loads((out / "summary.json").read_text())["wall_time_s"]
        reported = best_wall([*wsf, "run", str(SCENARIO), "--steps", str(STEPS), "--out",
                              str(out)], repeats=1, before=clean)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"  python -c 'import abm.model'          {imports:6.2f} s")
    print(f"  wsf validate baseline                  {validate:6.2f} s")
    print(f"  wsf run baseline --steps {STEPS} --no-report {run:6.2f} s "
          f"(simulation and twin {simulated:.2f} s)")
    print(f"  wsf run baseline --steps {STEPS}             {reported:6.2f} s (with the report)")
    record("startup_import", "import abm.model (s)", f"{imports:.2f}", "(reported)", True)
    record("startup_validate", "wsf validate baseline (s)", f"{validate:.2f}", "(reported)",
           True)
    record("startup_run", f"wsf run baseline, {STEPS} steps: wall / simulation (s)",
           f"{run:.2f} / {simulated:.2f}", "(reported)", True)


if __name__ == "__main__":
    main()
