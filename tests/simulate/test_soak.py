"""The 24-hour soak (config/scenarios/soak.yaml) and the invariant checker it relies on.

The soak runs the real daemon for a virtual day of diurnal load with seeded random Spot
interruptions, rebalance recommendations and capacity losses; the invariants are checked every
virtual minute. The checker itself is shown to fail on purpose: a checker that cannot fail proves
nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from hpscaler.catalogue import load_catalogue
from hpscaler.clock import LoopClock
from hpscaler.config import LoadedConfig, load_config
from hpscaler.daemon.app import Daemon
from hpscaler.daemon.context import Backends
from hpscaler.fake import StaticSpec, World
from hpscaler.model import ANNOTATION_DO_NOT_DISRUPT, CapacityType, Node, Pod
from hpscaler.provisioning.batching import AddRequest, NodesToAdd
from hpscaler.simulate.chaos import plan_chaos, planned_counts
from hpscaler.simulate.invariants import InvariantChecker, Ledger, clock_text
from hpscaler.simulate.report import report_table
from hpscaler.simulate.runner import load_scenario_config, simulate
from hpscaler.simulate.scenario import ScenarioError, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "config" / "scenarios"
SOAK = SCENARIOS / "soak.yaml"
HOUR = 3600


@pytest.fixture(scope="module")
def soak() -> dict[str, Any]:
    return simulate(load_scenario(SOAK))


def nodes_at(report: dict[str, Any], hours: tuple[float, float]) -> list[int]:
    """Running nodes in each sample whose time falls in [from, to) hours."""
    return [
        row["spotNodes"] + row["onDemandNodes"]
        for row in report["timeline"]
        if hours[0] * HOUR <= row["t"] < hours[1] * HOUR
    ]


def test_soak_runs_a_virtual_day(soak: dict[str, Any]) -> None:
    # How fast is a benchmark's question (bench/), never a test's: tests pass on a loaded machine.
    assert soak["virtualSeconds"] == 24 * HOUR
    # One check per virtual minute, and one at the end.
    assert soak["invariants"]["checks"] == 24 * 60 + 1
    assert "Violations: none" in report_table(soak)


def test_soak_has_no_violations_and_loses_no_pod(soak: dict[str, Any]) -> None:
    assert soak["violations"] == []
    lineages = soak["invariants"]["lineages"]
    assert lineages["lost"] == 0
    assert lineages["created"] == lineages["finished"] + lineages["removed"] + lineages["live"]
    assert lineages["finished"] > 0 and lineages["removed"] > 0
    # Every pod was scheduled, except the few a scale-down removed while they were still pending.
    assert soak["podsPendingAtEnd"] == 0
    assert soak["podsScheduled"] + soak["podsRemovedBeforeScheduling"] == soak["podsTotal"]
    assert soak["podsRemovedBeforeScheduling"] < 0.01 * soak["podsTotal"]
    # Pods killed without notice were re-created by their controllers, not lost.
    assert soak["podsKilledWithoutNotice"] > 0
    assert soak["podsRecreated"] >= soak["podsKilledWithoutNotice"]
    assert soak["podsKilledBeforeGracePeriod"] == 0
    assert 0 < soak["cost"] < soak["costAllOnDemand"]


def test_soak_faults_are_the_ones_the_seed_produced(soak: dict[str, Any]) -> None:
    scenario = load_scenario(SOAK)
    config: LoadedConfig = load_scenario_config(scenario)
    plan = plan_chaos(scenario, config.instance_groups)
    assert plan == plan_chaos(scenario, config.instance_groups)  # a pure function of the seed
    expected = planned_counts(plan).as_dict()
    chaos = soak["chaos"]
    assert chaos["seed"] == scenario.seed
    assert chaos["planned"] == expected
    # "happened" is read from the fake HyperPod's own logs, not from the driver.
    assert chaos["happened"] == expected
    assert chaos["missed"] == 0
    assert all(count > 0 for count in expected.values()), expected
    assert soak["interruptionsHandled"] >= expected["interruptionsWithNotice"]
    other = plan_chaos(scenario.model_copy(update={"seed": scenario.seed + 1}), config.instance_groups)
    assert [e.at for e in other] != [e.at for e in plan]


def test_soak_cluster_follows_the_load(soak: dict[str, Any]) -> None:
    night = nodes_at(soak, (1, 4))  # the load curve's trough is at 2:00
    afternoon = nodes_at(soak, (11, 16))
    assert night and afternoon
    # At night only the web tier's floor (4 pods of 1 CPU) runs: one node, two while one is replaced.
    assert min(night) == 1 and max(night) <= 2
    assert min(afternoon) > 3 * max(night)
    assert 10 * HOUR <= soak["nodesPeak"]["t"] <= 18 * HOUR
    assert soak["nodesPeak"]["running"] > 4 * max(night)
    assert nodes_at(soak, (23.5, 24.1))[-1] <= 2  # back down to the floor before the next morning
    assert soak["batchDeleteClusterNodesCalls"] > 0
    assert soak["spotShare"] > 0.9


def test_soak_is_deterministic() -> None:
    scenario = load_scenario(SOAK).model_copy(update={"duration": 4 * HOUR})
    first, second = simulate(scenario), simulate(scenario)
    for report in (first, second):
        report.pop("wallSeconds")
        report.pop("decisionSeconds")  # measured in wall time
    assert first == second
    assert first["violations"] == []


# --- the checker can fail ------------------------------------------------------------------------


def scenario_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(f"kind: Scenario\nspec:\n  name: test\n  config: {SCENARIOS / 'multi-az'}\n{body}")
    return path


def test_a_pod_that_fits_nowhere_is_reported_stuck_with_the_time(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path,
        "  duration: 30m\n  maxPendingSeconds: 10m\n"
        "  workloads: [{name: huge, replicas: 1, cpu: '64'}, {name: web, replicas: 2}]\n",
    )
    report = simulate(load_scenario(path))
    assert report["violations"] == [
        "at 0:11:00: pod default/huge-0 pending for more than 600s while capacity existed"
    ]
    (detail,) = report["violationDetails"]
    assert detail == {
        "t": 660,
        "kind": "stuck-pending",
        "subject": "default/huge-0",
        "message": "pod default/huge-0 pending for more than 600s while capacity existed",
    }


def test_pending_without_capacity_is_not_a_violation(tmp_path: Path) -> None:
    capacity = "".join(
        f"      - {{group: {g}, count: 0}}\n"
        for g in (
            "auto-spot-c5-2x-az1",
            "auto-spot-c5-2x-az2",
            "auto-spot-c5-x-az3",
            "auto-ondemand-c5-2x-az1",
        )
    )
    path = scenario_file(
        tmp_path,
        f"  duration: 30m\n  maxPendingSeconds: 10m\n  world:\n    capacity:\n{capacity}"
        "  workloads: [{name: web, replicas: 2}]\n",
    )
    report = simulate(load_scenario(path))
    assert report["podsPendingAtEnd"] == 2
    assert report["violations"] == []


@asynccontextmanager
async def checked_world(config: LoadedConfig, **world: Any) -> AsyncIterator[tuple[World, InvariantChecker]]:
    clock = LoopClock(0.0)
    w = World(config.cluster_name, config.instance_groups, clock=clock, **world)
    backends = Backends(w.kubernetes, w.hyperpod, w.placement, w.interruptions)
    ctx = Daemon(config, backends, load_catalogue(), clock).ctx  # for its NodePool lookups only
    checker = InvariantChecker(clock, w, config, ctx, Ledger(), max_pending_seconds=600)
    async with anyio.create_task_group() as tg:
        await tg.start(w.run)
        await tg.start(checker.run)
        yield w, checker
        tg.cancel_scope.cancel()


def multi_az() -> LoadedConfig:
    return load_config(SCENARIOS / "multi-az")


def web_pod(name: str, *, protected: bool = False) -> Pod:
    annotations = {ANNOTATION_DO_NOT_DISRUPT: "true"} if protected else {}
    return Pod(
        "default", name, {"cpu": 500}, annotations=annotations, owner_kind="ReplicaSet", owner_name="web"
    )


def a_node(name: str) -> Node:
    return Node(name, {}, {"cpu": 8000, "memory": 16 * 1024**3, "pods": 58})


@pytest.mark.looptime
async def test_checker_reports_a_lost_pod_but_not_a_recreated_one() -> None:
    async with checked_world(multi_az()) as (world, checker):
        kube = world.kubernetes
        kube.add_node(a_node("n1"))
        for name in ("web-0", "web-1"):
            checker.ledger.create(kube.add_pod(web_pod(name)).key, 0.0)
        await anyio.sleep(90)
        kube.remove_node("n1", "spot-interruption")  # both die; their controller re-creates them
        kube.remove_pod("default/web-1-r1")  # ... and one replacement vanishes behind the driver's back
        await anyio.sleep(60)
    assert [str(v) for v in checker.violations] == [
        "at 0:02:00: pod default/web-1 lost: no live pod, not finished, not removed by the driver"
    ]
    assert checker.summary()["lineages"] == {"created": 2, "finished": 0, "removed": 0, "live": 1, "lost": 1}


@pytest.mark.looptime
async def test_checker_reports_a_do_not_disrupt_pod_disrupted_by_hpscaler() -> None:
    async with checked_world(multi_az()) as (world, checker):
        kube = world.kubernetes
        for node in ("n1", "n2"):
            kube.add_node(a_node(node))
        kube.add_pod(web_pod("web-0", protected=True))
        await anyio.sleep(30)
        (first,) = [n.name for n in kube.nodes() if any(p.name == "web-0" for p in n.pods)]
        kube.remove_node(first, "deleted")  # as after a consolidation's BatchDeleteClusterNodes
        await anyio.sleep(60)
        replacement = kube.live_origins()["default/web-0"]
        await kube.evict_pod("default", replacement.split("/")[1])
        await anyio.sleep(60)
    kinds = [(v.kind, clock_text(v.t)) for v in checker.violations]
    assert kinds == [
        ("killed-by-removal", "0:00:30"),
        ("do-not-disrupt-node-removed", "0:00:30"),
        ("do-not-disrupt-evicted", "0:01:30"),
    ]
    assert "while it ran do-not-disrupt pod default/web-0" in checker.violations[1].message


@pytest.mark.looptime
async def test_checker_reports_nodepool_limits_and_cost_above_on_demand() -> None:
    # Spot dearer than On-Demand: a price list the checker must not take on trust.
    specs = {
        t: StaticSpec({"cpu": 7910, "memory": 14 * 1024**3, "pods": 58}, 0.10, 0.50)
        for t in ("ml.c5.2xlarge", "ml.c5.xlarge")
    }
    async with checked_world(multi_az(), specs=specs) as (world, checker):
        for _ in range(3):  # 150 nodes of 8 CPUs: above the NodePool's 1000-CPU limit
            await world.hyperpod.batch_add_nodes(
                AddRequest(world.hyperpod.cluster_name, "", (NodesToAdd("auto-spot-c5-2x-az1", 50),))
            )
        await anyio.sleep(150)
    kinds = {v.kind: clock_text(v.t) for v in checker.violations}
    assert kinds == {"limit:cpu": "0:01:00", "cost": "0:02:00"}
    assert world.hyperpod.nodes()[0].capacity_type is CapacityType.SPOT


# --- bad scenario files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chaos", "message"),
    [
        ("interruptions: {perHour: 1, withoutNotice: 1.5}", r"spec\.chaos\.interruptions\.withoutNotice"),
        ("interruptions: {perHour: 0}", r"spec\.chaos\.interruptions\.perHour"),
        ("interuptions: {perHour: 1}", r"spec\.chaos\.interuptions: Extra inputs"),
        (
            "capacityLoss: {perHour: 1, minDuration: 2h, maxDuration: 1h}",
            r"spec\.chaos\.capacityLoss: .*maxDuration",
        ),
        ("capacityLoss: {perHour: 1, maxDuration: soon}", r"spec\.chaos\.capacityLoss\.maxDuration"),
        (
            "capacityLoss: {perHour: 1, groups: [nope]}",
            r"spec\.chaos\.capacityLoss\.groups\.0: unknown instance group",
        ),
        (
            "rebalances: {perHour: 1, groups: [auto-ondemand-c5-2x-az1]}",
            r"spec\.chaos\.rebalances\.groups\.0: .*On-Demand",
        ),
        ("start: 3h", r"spec: chaos\.start is not before the scenario's end"),
    ],
)
def test_bad_chaos_sections_name_the_file_and_field(tmp_path: Path, chaos: str, message: str) -> None:
    path = scenario_file(tmp_path, f"  duration: 2h\n  chaos:\n    {chaos}\n")
    with pytest.raises(ScenarioError, match=rf"scenario\.yaml: .*{message}"):
        load_scenario(path)


@pytest.mark.parametrize(
    ("workload", "message"),
    [
        (
            "{name: w, diurnal: {minReplicas: 5, maxReplicas: 2}}",
            r"spec\.workloads\.0\.diurnal: .*maxReplicas",
        ),
        (
            "{name: w, replicas: 2, diurnal: {minReplicas: 1, maxReplicas: 2}}",
            "exactly one of replicas and diurnal",
        ),
        ("{name: w, replicas: 2, repeat: {every: 1h}}", "repeat is for Jobs"),
        ("{name: w, kind: Job, replicas: 2, repeat: {every: 1h}}", "repeat needs runFor"),
        (
            "{name: w, kind: Job, replicas: 2, runFor: 1h, repeat: {every: 0s}}",
            r"spec\.workloads\.0\.repeat\.every",
        ),
        (
            "{name: w, kind: Job, diurnal: {minReplicas: 1, maxReplicas: 2}}",
            "a Job with diurnal needs repeat",
        ),
    ],
)
def test_bad_load_shapes_name_the_field(tmp_path: Path, workload: str, message: str) -> None:
    path = scenario_file(tmp_path, f"  workloads: [{workload}]\n")
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_diurnal_and_repeat_shapes() -> None:
    scenario = load_scenario(SOAK)
    web = next(w for w in scenario.workloads if w.name == "web")
    assert web.replicas_at(14 * HOUR) == 60 and web.replicas_at(2 * HOUR) == 4
    assert web.replicas_at(38 * HOUR) == 60  # it repeats every day
    batch = next(w for w in scenario.workloads if w.name == "batch")
    assert batch.submissions(scenario.duration) == [h * HOUR for h in range(6, 20)]
