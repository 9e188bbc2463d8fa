"""Issue 12.7: a gang runs in one zone or not at all, also after part of its capacity fails.

The case from the field: an 8-member gang got 6 nodes in one zone and 2 InsufficientInstanceCapacity
errors; it was planned again onto 8 nodes in another zone while the 6 kept launching, and its members
ran in two zones. Here the same happens on the in-memory HyperPod (the 2 launches fail as EC2 answers
a launch without capacity, `fake.hyperpod`), through the real daemon loops, in virtual time; and the
pure decision is checked on its own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from hpscaler.model import CapacityType, Gang, Pod
from hpscaler.provisioning.gangs import gang_launches, launch_zones, stranded_launches
from hpscaler.provisioning.launches import InFlight
from hpscaler.scheduling.types import Plan, PlannedNode, Unschedulable
from hpscaler.simulate.runner import simulate
from hpscaler.simulate.scenario import load_scenario

MULTI_AZ = Path(__file__).resolve().parents[2] / "config" / "scenarios" / "multi-az"


def _scenario(tmp_path: Path, capacity: str, launch: int = 90) -> dict[str, Any]:
    path = tmp_path / "gang.yaml"
    path.write_text(
        f"""
kind: Scenario
spec:
  name: gang-partial-capacity
  config: {MULTI_AZ}
  duration: 40m
  checkSeconds: 20
  world:
    launchSeconds: {launch}
    capacity:
{capacity}
  workloads:
    - name: train
      kind: PyTorchJob
      replicas: 8
      cpu: "7"
      memory: 4Gi
      gang: true
"""
    )
    return simulate(load_scenario(path))


def test_gang_finishes_in_its_zone_when_part_of_its_capacity_fails(tmp_path: Path) -> None:
    """Zone a (best Spot score) has Spot room for 6 of 8 nodes. The 2 failed launches are finished in
    zone a by its On-Demand group; nothing moves to zone b."""
    report = _scenario(tmp_path, "      - {group: auto-spot-c5-2x-az1, count: 6}")
    assert report["gangs"] == [{"name": "default/train", "members": 8, "maxZonesAtOnce": 1}]
    assert report["violations"] == []
    launched = report["nodesLaunched"]
    assert launched.get("auto-spot-c5-2x-az1") == {"spot": 6}
    assert launched.get("auto-ondemand-c5-2x-az1") == {"on-demand": 2}
    assert "auto-spot-c5-2x-az2" not in launched


def test_gang_moves_whole_when_its_zone_cannot_finish_it(tmp_path: Path) -> None:
    """Zone a has room for 6 and its On-Demand group none: the 6 launches there are cancelled and the
    whole gang goes to zone b, never running in two zones."""
    capacity = (
        "      - {group: auto-spot-c5-2x-az1, count: 6}\n      - {group: auto-ondemand-c5-2x-az1, count: 0}"
    )
    report = _scenario(tmp_path, capacity)
    assert report["gangs"] == [{"name": "default/train", "members": 8, "maxZonesAtOnce": 1}]
    assert report["violations"] == []
    assert report["podsScheduled"] == 8
    assert report["nodesLaunched"].get("auto-spot-c5-2x-az2") == {"spot": 8}


# -- the pure decision ---------------------------------------------------------------------------


def _member(i: int) -> Pod:
    return Pod("ml", f"w{i}", {"cpu": 7000}, gang=Gang("ml/train", 8))


def test_launches_left_in_another_zone_are_stranded() -> None:
    members = {p.key: p for p in (_member(i) for i in range(8))}
    loner = Pod("ml", "loner", {"cpu": 1})
    pods = {**members, loner.key: loner}
    records = [InFlight(f"a-{i}", "spot-a", "pool", 0.0, tuple(members)) for i in range(6)]
    records.append(InFlight("other", "spot-a", "pool", 0.0, (loner.key,)))
    launches = gang_launches(records, pods, {"spot-a": "zone-a", "spot-b": "zone-b"})
    assert launches == {"ml/train": {"zone-a": [f"a-{i}" for i in range(6)]}}
    assert launch_zones(launches) == {"ml/train": "zone-a"}
    node = PlannedNode("b-1", "pool", "spot-b", "t", "zone-b", CapacityType.SPOT, {}, 1.0, list(members))
    zones = {r.logical_id: "zone-a" for r in records}
    # Moved to zone b: the six in zone a go; the loner's node stays.
    assert stranded_launches(Plan(new_nodes=[node]), launches, pods, zones) == {
        "ml/train": [f"a-{i}" for i in range(6)]
    }
    # Finished in zone a (on the six in flight and two new ones there): nothing goes.
    finished = Plan(
        new_nodes=[
            PlannedNode(
                "a-7", "pool", "od-a", "t", "zone-a", CapacityType.ON_DEMAND, {}, 1.0, ["ml/w6", "ml/w7"]
            )
        ],
        inflight={f"a-{i}": [f"ml/w{i}"] for i in range(6)},
    )
    assert stranded_launches(finished, launches, pods, zones) == {}
    # Not placeable anywhere now: all-or-nothing, the partial launches go too.
    refused = Plan(unschedulable=[Unschedulable(k, "no zone") for k in members])
    assert stranded_launches(refused, launches, pods, zones) == {"ml/train": [f"a-{i}" for i in range(6)]}
    # Every member bound already: the launches serve running pods, nothing to decide.
    assert stranded_launches(Plan(), launches, pods, zones) == {}
    # Members already run in zone a (on nodes not yet counted as joined): nothing there is cancelled,
    # even when the rest cannot be placed now.
    bound = {**pods, "ml/w0": replace(members["ml/w0"], node_name="a-0")}
    refused_rest = Plan(unschedulable=[Unschedulable(k, "no room in zone-a") for k in list(members)[1:]])
    assert stranded_launches(refused_rest, launches, bound, zones) == {}


def test_launches_into_one_zone_of_a_multi_zone_group_are_counted_in_that_zone() -> None:
    """A group with subnets in two zones: a launch asked for with AvailabilityZones [zone-b] is a
    zone-b launch, not one in the group's first zone (else the gang is "finished" in zone a and
    asked for twice)."""
    members = {p.key: p for p in (_member(i) for i in range(2))}
    records = [InFlight(f"b-{i}", "multi", "pool", 0.0, tuple(members), zone="zone-b") for i in range(2)]
    launches = gang_launches(records, members, {"multi": "zone-a"})
    assert launches == {"ml/train": {"zone-b": ["b-0", "b-1"]}}
    assert launch_zones(launches) == {"ml/train": "zone-b"}
