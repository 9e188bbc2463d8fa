"""The shipped registration and DaemonSet scenarios: nodes become what the plan assumed, in one call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpscaler.daemon.provisioner import Provisioner
from hpscaler.daemon.registration import Registrar
from hpscaler.simulate.runner import simulate
from hpscaler.simulate.scenario import ScenarioError, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "config" / "scenarios"
LAUNCH_AND_JOIN = 90 + 30  # the world's launchSeconds + joinSeconds


def run(name: str) -> dict[str, Any]:
    return simulate(load_scenario(SCENARIOS / f"{name}.yaml"))


def test_pods_selecting_the_nodepool_template_label_all_schedule_from_one_call() -> None:
    result = run("nodepool-labels")
    assert result["violations"] == []
    assert result["podsScheduled"] == result["podsTotal"] == 7
    assert result["batchAddClusterNodesCalls"] == 1
    assert result["batchDeleteClusterNodesCalls"] == 0
    assert result["nodesLaunched"] == {"auto-spot-c5-2x-az1": {"spot": 1}}
    assert result["pendingToRunningSeconds"]["max"] <= LAUNCH_AND_JOIN + 2


def test_without_registration_the_same_pods_never_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_registration(self: Registrar) -> int:
        return 0

    monkeypatch.setattr(Registrar, "sweep", no_registration)
    result = run("nodepool-labels")
    assert result["podsScheduled"] == 0
    assert result["batchAddClusterNodesCalls"] > 1  # the node never became what was planned


def test_daemonset_overhead_is_reserved_so_no_pod_waits_for_a_second_round() -> None:
    result = run("daemonset-overhead")
    assert result["violations"] == []
    assert result["podsScheduled"] == result["podsTotal"] == 35  # DaemonSet pods are not counted
    assert result["batchAddClusterNodesCalls"] == 1
    assert result["nodesLaunched"] == {"auto-spot-c5-2x-az1": {"spot": 6}}  # 6 pods a node, not 7
    assert result["pendingToRunningSeconds"]["max"] <= LAUNCH_AND_JOIN + 2


def test_planned_without_daemonsets_pods_wait_for_a_second_round(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = Provisioner._plan

    def blind(self: Provisioner, extra: Any) -> Any:
        saved, self.ctx.cache.daemonsets = self.ctx.cache.daemonsets, {}
        try:
            return plan(self, extra)
        finally:
            self.ctx.cache.daemonsets = saved

    monkeypatch.setattr(Provisioner, "_plan", blind)
    result = run("daemonset-overhead")
    assert result["batchAddClusterNodesCalls"] == 2
    assert result["pendingToRunningSeconds"]["max"] > 2 * LAUNCH_AND_JOIN


def test_daemonset_names_must_be_unique(tmp_path: Path) -> None:
    doc = tmp_path / "s.yaml"
    doc.write_text(
        "apiVersion: hpscaler.io/v1alpha1\nkind: Scenario\nmetadata: {name: s}\nspec:\n"
        "  daemonsets: [{name: a}, {name: a}]\n"
    )
    with pytest.raises(ScenarioError, match="daemonset names must be unique"):
        load_scenario(doc)
