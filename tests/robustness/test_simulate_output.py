"""The simulator's own output: no repeated rows, virtual timestamps in its logs, defined numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from hpscaler.cli import main

REPO = Path(__file__).resolve().parents[2]
SCENARIO = """kind: Scenario
metadata: {name: short}
spec:
  duration: 20m
  sampleSeconds: 5m
  workloads:
  - {name: web, replicas: 3, cpu: '1'}
"""


def simulate(tmp_path: Path, *args: str) -> tuple[str, str]:
    path = tmp_path / "short.yaml"
    path.write_text(SCENARIO)
    result = CliRunner().invoke(main, ["simulate", str(path), *args])
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def test_the_timeline_has_each_sample_once(tmp_path: Path) -> None:
    stdout, _ = simulate(tmp_path, "--output", "json")
    times = [row["t"] for row in json.loads(stdout)["timeline"]]
    assert times == [0, 300, 600, 900, 1200]  # the end of the run is also a periodic sample
    table, _ = simulate(tmp_path)
    rows = [line.split()[0] for line in table.splitlines() if re.match(r"^\s+\d+m\s", line)]
    assert rows == ["0m", "5m", "10m", "15m", "20m"]


def test_log_timestamps_are_virtual(tmp_path: Path) -> None:
    _, stderr = simulate(tmp_path, "--log-level", "info")
    stamps = re.findall(r"^(\d{4}-\d\d-\d\dT[\d:.]+Z) ", stderr, flags=re.M)
    assert len(stamps) > 3
    # The simulated run starts at 2026-01-01T00:00:00Z and lasts 20 virtual minutes.
    assert all(s.startswith("2026-01-01T00:") for s in stamps), stamps[:5]
    assert stamps == sorted(stamps)


def test_the_readme_defines_interruptions_handled() -> None:
    readme = (REPO / "README.md").read_text()
    definition = readme[readme.index("**Interruptions handled**") :].split("\n\n")[0]
    for term in ("interruptionsHandled", "tainted", "drained", "without notice", "Duplicate notices"):
        assert term in definition
