"""The exact timeline of a simulation, for pictures: every node's life, every fault, pending pods.

The report's `timeline` samples the cluster every `sampleSeconds`; an interruption storm can come
and go between two samples. The trace is read from the in-memory world's own logs instead (billing
records, reclaims, rebalance recommendations and capacity changes) and from the recorder's pending
count at each change, so nothing that happened is lost. Times are seconds since the scenario start.
"""

from __future__ import annotations

from typing import Any

from hpscaler.fake import World
from hpscaler.model import CapacityType

TRACE_SCHEMA_VERSION = 1


def _offering_name(offering: tuple[str, str, CapacityType]) -> str:
    instance_type, zone, capacity_type = offering
    return f"{instance_type}/{zone}/{capacity_type.value}"


def _offering_groups(world: World) -> dict[tuple[str, str, CapacityType], str]:
    return {
        (t, z, g.capacity_type): g.name
        for g in world.hyperpod.groups()
        for z in g.zones
        for t in g.instance_types
    }


def capacity_losses(
    changes: list[dict[str, Any]], end: float, offerings: dict[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """Spans in which a group had no capacity at all: from a change to 0 until one above 0 (or the end).

    `offerings` lists each group's offerings; those never changed count as available.
    """
    by_group: dict[str, dict[str, int | None]] = {
        group: dict.fromkeys(names) for group, names in (offerings or {}).items()
    }
    out_since: dict[str, float] = {}
    spans: list[dict[str, Any]] = []
    for change in sorted(changes, key=lambda c: c["t"]):
        group = change["group"]
        counts = by_group.setdefault(group, {})
        counts[change["offering"]] = change["count"]
        dry = all(count == 0 for count in counts.values())
        if dry and group not in out_since:
            out_since[group] = change["t"]
        elif not dry and group in out_since:
            spans.append({"group": group, "start": out_since.pop(group), "end": change["t"]})
    spans.extend({"group": g, "start": t, "end": end} for g, t in out_since.items())
    return sorted(spans, key=lambda s: (s["start"], s["group"]))


def build_trace(world: World, start: float, end: float, pending: list[tuple[float, int]]) -> dict[str, Any]:
    """The trace of one run from `start` to `end` (absolute clock times); `pending`: (time, count)."""
    hyperpod = world.hyperpod
    groups = {g.name: g.capacity_type.value for g in hyperpod.groups()}
    offering_groups = _offering_groups(world)
    by_instance = {m.instance_id: m.group for m in hyperpod.meter_records()}
    changes = [
        {
            "t": round(c.time - start, 3),
            "group": offering_groups.get(c.offering, "?"),
            "offering": _offering_name(c.offering),
            "count": c.count,
        }
        for c in hyperpod.capacity_changes
    ]
    duration = end - start
    group_offerings: dict[str, list[str]] = {}
    for offering, group in offering_groups.items():
        group_offerings.setdefault(group, []).append(_offering_name(offering))
    return {
        "schemaVersion": TRACE_SCHEMA_VERSION,
        "duration": duration,
        "groups": groups,
        "nodes": [
            {
                "group": m.group,
                "capacityType": m.capacity_type.value,
                "instanceType": m.instance_type,
                "zone": m.zone,
                "start": round(m.start - start, 3),
                "end": round((m.end if m.end is not None else end) - start, 3),
                "pricePerHour": m.price_per_hour,
                "onDemandPricePerHour": m.on_demand_price_per_hour,
            }
            for m in hyperpod.meter_records()
        ],
        "interruptions": [
            {"t": round(r.time - start, 3), "group": r.group, "notice": r.notice} for r in hyperpod.reclaims
        ],
        "rebalances": [
            {"t": round(t - start, 3), "group": by_instance.get(instance_id, "?")}
            for t, instance_id in hyperpod.rebalances
        ],
        "capacityLosses": capacity_losses(changes, duration, group_offerings),
        "pending": [[round(t - start, 3), count] for t, count in pending],
    }
