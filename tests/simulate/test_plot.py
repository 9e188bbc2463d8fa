"""`simulate --plot`: the exact trace it draws, and valid PNG, SVG and HTML files."""

from __future__ import annotations

import builtins
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hpscaler.cli import main
from hpscaler.simulate.plot import PlotError, cumulative_cost, node_counts, write_plot
from hpscaler.simulate.runner import simulate
from hpscaler.simulate.scenario import load_scenario
from hpscaler.simulate.trace import capacity_losses

REPO = Path(__file__).resolve().parents[2]
MULTI_AZ = REPO / "config" / "scenarios" / "multi-az"
SPOT = "auto-spot-c5-2x-az1"

# A short storm: the interruptions fall between two 10-minute samples, and a group runs dry.
SCENARIO = f"""
apiVersion: hpscaler.io/v1alpha1
kind: Scenario
metadata: {{name: short-storm}}
spec:
  description: interruptions between samples
  config: {MULTI_AZ}
  duration: 40m
  sampleSeconds: 10m
  workloads:
    - {{name: web, replicas: 20, cpu: "1", memory: 1Gi}}
  events:
    - {{at: 12m, interrupt: {{group: {SPOT}, count: 2, notice: true}}}}
    - {{at: 13m, interrupt: {{group: {SPOT}, count: 1, notice: false}}}}
    - {{at: 14m, capacity: {{group: auto-spot-c5-2x-az2, count: 0}}}}
    - {{at: 25m, capacity: {{group: auto-spot-c5-2x-az2, count: null}}}}
"""


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plot") / "short-storm.yaml"
    path.write_text(SCENARIO)
    return path


@pytest.fixture(scope="module")
def report(scenario_file: Path) -> dict[str, Any]:
    return simulate(load_scenario(scenario_file), trace=True)


def test_the_trace_holds_every_fault_at_its_time_even_between_samples(report: dict[str, Any]) -> None:
    trace = report["trace"]
    assert {row["t"] for row in report["timeline"]} == {0, 600, 1200, 1800, 2400}
    assert sorted((i["t"], i["notice"]) for i in trace["interruptions"]) == [
        (720.0, True),
        (720.0, True),
        (780.0, False),
    ]
    assert trace["capacityLosses"] == [{"group": "auto-spot-c5-2x-az2", "start": 840.0, "end": 1500.0}]
    assert trace["schemaVersion"] == 1 and report["schemaVersion"] == 1
    # the pending count changes more often than the samples show, and ends at zero
    assert len(trace["pending"]) > len(report["timeline"]) and trace["pending"][-1][1] == 0


def test_the_trace_cost_adds_up_to_the_reports_cost(report: dict[str, Any]) -> None:
    trace = report["trace"]
    end = [trace["duration"]]
    assert cumulative_cost(trace, end, on_demand=False)[-1] == pytest.approx(report["cost"], abs=1e-3)
    assert cumulative_cost(trace, end, on_demand=True)[-1] == pytest.approx(
        report["costAllOnDemand"], abs=1e-3
    )


def test_node_counts_count_a_node_from_its_start_until_its_end() -> None:
    trace = {
        "duration": 100.0,
        "groups": {"a": "spot", "b": "on-demand", "idle": "spot"},
        "nodes": [
            {"group": "a", "start": 10.0, "end": 50.0},
            {"group": "a", "start": 20.0, "end": 100.0},
            {"group": "b", "start": 50.0, "end": 60.0},
        ],
    }
    times = [0.0, 10.0, 20.0, 50.0, 60.0, 100.0]
    assert node_counts(trace, times) == {"a": [0, 1, 2, 1, 1, 0], "b": [0, 0, 0, 1, 0, 0]}


def test_a_group_is_out_of_capacity_only_while_every_offering_is_dry() -> None:
    changes = [
        {"t": 10.0, "group": "g", "offering": "x/a", "count": 0},
        {"t": 20.0, "group": "g", "offering": "x/b", "count": 0},
        {"t": 30.0, "group": "g", "offering": "x/a", "count": 5},
        {"t": 40.0, "group": "h", "offering": "y/a", "count": 0},
    ]
    assert capacity_losses(changes, 100.0, {"g": ["x/a", "x/b"], "h": ["y/a"]}) == [
        {"group": "g", "start": 20.0, "end": 30.0},
        {"group": "h", "start": 40.0, "end": 100.0},
    ]


def test_png_is_a_valid_image(report: dict[str, Any], tmp_path: Path) -> None:
    import matplotlib.image

    path = write_plot(report, tmp_path / "run.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert width > 800 and height > 600
    assert pixels.std() > 0.05  # not a blank canvas


def test_svg_and_html_are_well_formed(report: dict[str, Any], tmp_path: Path) -> None:
    svg = write_plot(report, tmp_path / "run.svg")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    page = write_plot(report, tmp_path / "run.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "short-storm" in page
    assert "<?xml" not in page  # the SVG's own prolog is dropped inside HTML


def test_cli_writes_the_plot_and_still_prints_the_report(scenario_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "storm.png"
    result = CliRunner().invoke(
        main,
        ["simulate", str(scenario_file), "--plot", str(target), "--output", "json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:4] == b"\x89PNG"
    assert '"trace"' in result.stdout


def test_unknown_format_and_missing_folder_exit_2_before_simulating(
    scenario_file: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(main, ["simulate", str(scenario_file), "--plot", str(tmp_path / "x.jpg")])
    assert result.exit_code == 2 and "unknown format '.jpg'" in result.output
    result = CliRunner().invoke(
        main, ["simulate", str(scenario_file), "--plot", str(tmp_path / "no" / "x.png")]
    )
    assert result.exit_code == 2 and "does not exist" in result.output


def test_without_matplotlib_the_message_says_what_to_install(
    scenario_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    result = CliRunner().invoke(main, ["simulate", str(scenario_file), "--plot", str(tmp_path / "x.png")])
    assert result.exit_code == 2
    assert "pip install 'hpscaler[plot]'" in result.output
    with pytest.raises(PlotError, match="hpscaler\\[plot\\]"):
        write_plot({"trace": {}}, tmp_path / "y.png")
