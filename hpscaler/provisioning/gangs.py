"""Gangs and their launches in flight: a gang runs in one zone or not at all. Pure: no I/O.

When part of a gang's capacity fails (8 GPU nodes asked for in one zone, 6 launch, 2 hit
InsufficientInstanceCapacity), the 6 are still on their way. Planning the gang again must either
finish it in that zone (the scheduler is told where its launches are: `launch_zones`) or move the
whole gang, and then the launches left behind are cancelled (`stranded_launches`): were they kept,
Kubernetes would bind members to them as they join, and the gang would run in two zones at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hpscaler.model import Pod
from hpscaler.provisioning.launches import InFlight
from hpscaler.scheduling.gangs import gang_key
from hpscaler.scheduling.types import Plan

GangLaunches = dict[str, dict[str, list[str]]]
"""Gang (`namespace/name`) -> zone -> logical ids of the nodes in flight launched for its members."""


def gang_launches(
    inflight: Iterable[InFlight], pods: Mapping[str, Pod], group_zone: Mapping[str, str]
) -> GangLaunches:
    """Which nodes in flight were launched for which gang, by zone."""
    found: GangLaunches = {}
    for record in inflight:
        gangs = {gang_key(pods[key]) for key in record.for_pods if key in pods and pods[key].gang}
        # The zone asked for in AvailabilityZones, else the group's only zone.
        zone = record.zone or group_zone.get(record.group, "")
        for gang in sorted(gangs):
            found.setdefault(gang, {}).setdefault(zone, []).append(record.logical_id)
    return found


def launch_zones(launches: GangLaunches) -> dict[str, str]:
    """The zone to finish each gang in: where most of its launches in flight are."""
    return {gang: max(zones, key=lambda z: (len(zones[z]), z)) for gang, zones in launches.items() if zones}


def stranded_launches(
    plan: Plan,
    launches: GangLaunches,
    pods: Mapping[str, Pod],
    node_zones: Mapping[str, str],
) -> dict[str, list[str]]:
    """Per gang, the launches in flight to cancel: those outside the zone the plan puts the gang in, or
    all of them when the plan cannot place the gang at all (all-or-nothing: no idle partial gang);
    never those in a zone where members of the gang run.

    `node_zones`: zone of every existing and in-flight node by name (in-flight: logical id).
    """
    placed_zone: dict[str, set[str]] = {}
    for node in plan.new_nodes:
        for key in node.pods:
            _note(placed_zone, pods.get(key), node.zone)
    for mapping in (plan.existing, plan.inflight):
        for name, keys in mapping.items():
            for key in keys:
                _note(placed_zone, pods.get(key), node_zones.get(name, ""))
    running_zone: dict[str, set[str]] = {}
    for pod in pods.values():
        if pod.node_name:
            _note(running_zone, pod, node_zones.get(pod.node_name, ""))
    refused = {gang_key(pods[u.pod]) for u in plan.unschedulable if u.pod in pods and pods[u.pod].gang}
    stranded: dict[str, list[str]] = {}
    for gang, zones in launches.items():
        if gang not in placed_zone and gang not in refused:
            continue  # no member pending any more: the launches serve pods that were bound already
        # Members already running fix the zone (a node there may hold them before it counts as joined).
        kept = running_zone.get(gang, set()) | (
            placed_zone.get(gang, set()) if gang not in refused else set()
        )
        ids = [lid for zone, lids in sorted(zones.items()) if zone not in kept for lid in lids]
        if ids:
            stranded[gang] = ids
    return stranded


def _note(placed_zone: dict[str, set[str]], pod: Pod | None, zone: str) -> None:
    if pod is not None and pod.gang is not None:
        placed_zone.setdefault(gang_key(pod), set()).add(zone)
