"""The benchmarks still run against the package's current interfaces (`python -m bench --quick`).

Speed is never asserted here (BENCHMARKS.md is where targets are met); this only catches a
benchmark that a change of interface broke, as the typed `AddRequest` once broke W3's wrapper.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The workloads that need no `bench` extra (scipy): the daemon ones wrap backends, W7/W8 check plans.
WORKLOADS = ("W3", "W4", "W7", "W8")


def test_quick_benchmarks_run_and_report_every_workload(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", ",".join(WORKLOADS), "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    reported = {row["workload"] for row in results["rows"]}
    assert reported == set(WORKLOADS)
