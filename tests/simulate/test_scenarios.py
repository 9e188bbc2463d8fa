"""Every shipped scenario runs the real daemon on the fake world, in virtual time, with no violations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpscaler.simulate.report import report_table
from hpscaler.simulate.runner import simulate
from hpscaler.simulate.scenario import ScenarioError, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "config" / "scenarios"
REQUIRED = {
    "podsScheduled",
    "podsTotal",
    "pendingToRunningSeconds",
    "nodesLaunched",
    "batchAddClusterNodesCalls",
    "batchDeleteClusterNodesCalls",
    "interruptionsHandled",
    "podsKilledBeforeGracePeriod",
    "cost",
    "costAllOnDemand",
    "spotShare",
    "violations",
    "timeline",
}
_reports: dict[str, dict[str, Any]] = {}


def report(name: str) -> dict[str, Any]:
    if name not in _reports:
        _reports[name] = simulate(load_scenario(SCENARIOS / f"{name}.yaml"))
    return _reports[name]


@pytest.mark.parametrize(
    "name", ["burst", "spot-capacity-loss", "interruption-storm", "diurnal", "interruption-sources"]
)
def test_scenario_has_no_violations_and_a_complete_report(name: str) -> None:
    result = report(name)
    assert result.keys() >= REQUIRED
    assert result["violations"] == []
    assert result["podsScheduled"] == result["podsTotal"] > 0
    assert result["podsKilledBeforeGracePeriod"] == 0
    assert 0 < result["cost"] <= result["costAllOnDemand"]
    assert "Violations: none" in report_table(result)
    # The invariants were checked every virtual minute while the scenario ran, not only at the end.
    invariants = result["invariants"]
    assert invariants["checks"] == result["virtualSeconds"] // 60 + 1
    assert invariants["lineages"]["lost"] == 0
    assert invariants["lineages"]["created"] > 0


def test_burst_uses_one_call_per_fifty_nodes_spot_only_and_scales_to_zero() -> None:
    result = report("burst")
    launched = result["nodesLaunched"]
    assert launched == {"auto-spot-c5-2x-az1": {"spot": 29}}  # 200 pods / 7 per c5.2xlarge
    assert result["batchAddClusterNodesCalls"] == 1
    assert result["spotShare"] == 1.0
    last = result["timeline"][-1]
    assert last["spotNodes"] == last["onDemandNodes"] == 0


def test_spot_capacity_loss_falls_back_to_on_demand_within_minutes() -> None:
    result = report("spot-capacity-loss")
    assert result["nodesLaunched"]["auto-ondemand-c5-2x-az1"]["on-demand"] > 0
    assert result["pendingToRunningSeconds"]["p99"] < 600


def test_interruption_storm_replaces_and_drains_without_killing_noticed_pods() -> None:
    result = report("interruption-storm")
    assert result["interruptionsHandled"] >= 12
    assert result["evictions"] > 0
    assert result["podsKilledWithoutNotice"] > 0  # the three terminations without notice


def test_interruption_sources_each_lead_to_one_drain_and_one_replacement() -> None:
    result = report("interruption-sources")
    # Six interruptions, every one counted, the two without notice (HyperPod events only) too.
    assert result["interruptionsHandled"] == 6
    signals = result["interruptionSignals"]
    assert signals["sqs"] >= 2 and signals["agent"] == 2 and signals["taint"] == 2
    assert signals["hyperpod-events"] >= 6  # HyperPod reports every termination
    assert result["interruptionDuplicates"] >= 2  # the three-source notice was handled once
    assert result["podsKilledBeforeGracePeriod"] == 0
    assert result["spotShare"] > 0.9


def test_diurnal_load_ends_at_zero_nodes() -> None:
    result = report("diurnal")
    last = result["timeline"][-1]
    assert last["spotNodes"] + last["onDemandNodes"] == 0
    assert result["batchDeleteClusterNodesCalls"] > 0


def test_scenario_errors_name_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Scenario\nspec:\n  name: x\n  duration: 2 hours\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml.*spec.duration"):
        load_scenario(bad)
    bad.write_text(
        "kind: Scenario\nspec:\n  name: x\n  events: [{at: 1m, scale: {workload: nope, replicas: 1}}]\n"
    )
    with pytest.raises(ScenarioError, match="unknown workload 'nope'"):
        load_scenario(bad)


def test_scenario_groups_must_exist_and_only_spot_groups_are_interrupted(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    config = SCENARIOS / "multi-az"
    bad.write_text(
        f"kind: Scenario\nspec:\n  name: x\n  config: {config}\n"
        "  world:\n    capacity: [{group: nope, count: 1}]\n"
    )
    with pytest.raises(
        ScenarioError, match=r"bad.yaml.*spec.world.capacity.0.group: unknown instance group 'nope'"
    ):
        load_scenario(bad)
    bad.write_text(
        f"kind: Scenario\nspec:\n  name: x\n  config: {config}\n"
        "  events: [{at: 1m, interrupt: {group: auto-ondemand-c5-2x-az1}}]\n"
    )
    with pytest.raises(ScenarioError, match=r"spec.events.0.interrupt.group: .* is an On-Demand group"):
        load_scenario(bad)
