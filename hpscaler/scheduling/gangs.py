"""Gangs: placed first, all-or-nothing and in a single zone.

A gang goes to the zone of its members already running, if any, else to the zone its nodes in flight
were launched in (`SchedulingInput.gang_zones`) if it fits there, else to the best-ranked zone every
member could use; every tentative placement is journaled and undone when a gang does not fit a zone.
"""

from __future__ import annotations

import numpy as np

from hpscaler.quantity import format_resource
from hpscaler.scheduling.explain import static_reason
from hpscaler.scheduling.index import RoundIndex
from hpscaler.scheduling.packing import EPS, Shape
from hpscaler.scheduling.placement import Packing
from hpscaler.scheduling.signatures import gang_key
from hpscaler.scheduling.targets import NewNode, Target

__all__ = ["GangPlacer", "gang_key"]


class GangPlacer:
    """Places the round's gangs onto its packing."""

    def __init__(self, index: RoundIndex, packing: Packing) -> None:
        self.index = index
        self.packing = packing

    def place_gangs(self) -> None:
        """Place every gang all-or-nothing in one zone, or report its pods unschedulable."""
        gangs: dict[str, list[Shape]] = {}
        for shape in self.index.shapes:
            if shape.gang:
                gangs.setdefault(shape.gang, []).append(shape)
        if not gangs:
            return
        running: dict[str, int] = {}
        running_zones: dict[str, set[str]] = {}
        for node in self.index.inp.nodes:
            for pod in node.pods:
                if pod.gang:
                    key = gang_key(pod)
                    running[key] = running.get(key, 0) + 1
                    if node.zone:
                        running_zones.setdefault(key, set()).add(node.zone)
        self.packing.journal = []
        for name in sorted(gangs, key=lambda g: (-sum(s.remaining for s in gangs[g]), g)):
            shapes = sorted(gangs[name], key=lambda s: (-self.index.sizes[s.index], s.index))
            members = sum(s.remaining for s in shapes)
            have = members + running.get(name, 0)
            min_member = max(p.gang.min_member for s in shapes for p in s.pods[:1] if p.gang)
            if have < min_member:
                self.fail_gang(
                    shapes,
                    f"gang {name} incomplete: {have} of {min_member} members exist; "
                    "waiting for the rest before provisioning",
                )
                continue
            zones = self.gang_zones(shapes)
            fixed = running_zones.get(name)
            if fixed:
                zones = [z for z in zones if z in fixed]
            started = self.index.inp.gang_zones.get(name)
            if started in zones:  # capacity is on its way there: finish the gang in that zone first
                zones = [started, *(z for z in zones if z != started)]
            if not self.place_gang(shapes, zones):
                self.fail_gang(shapes, self.gang_failure(name, shapes, zones, fixed))
        self.packing.journal = None

    def gang_zones(self, shapes: list[Shape]) -> list[str]:
        """Zones every member could use, best-ranked first."""
        ranked: dict[str, tuple[object, ...]] = {}
        common: set[str] | None = None
        for shape in shapes:
            zones = {o.zone for o in shape.cls.options} | self.index.bin_zones(shape.cls)
            zones.discard("")
            common = zones if common is None else common & zones
            for option in shape.cls.options:
                if (option.group.name, option.zone) in self.index.inp.unavailable:
                    continue
                key = option.rank_key()
                if option.zone not in ranked or key < ranked[option.zone]:
                    ranked[option.zone] = key
        return sorted(common or set(), key=lambda z: (z not in ranked, ranked.get(z, ()), z))

    def place_gang(self, shapes: list[Shape], zones: list[str]) -> bool:
        assert self.packing.journal is not None
        for zone in zones:
            mark = len(self.packing.journal)
            if all(self.place_gang_shape(shape, zone) for shape in shapes):
                return True
            self.packing.rollback(mark)
        return False

    def place_gang_shape(self, shape: Shape, zone: str) -> bool:
        bins: list[Target] = [
            *self.packing.zone_bins.get(zone, ()),
            *self.packing.new_zone_bins.get(zone, ()),
        ]
        if bins:
            # One vectorised pass finds the nodes of the zone with room, instead of a check per node.
            residual = np.array([b.residual for b in bins])
            for i in np.flatnonzero(np.all(shape.demand <= residual + EPS, axis=1)):
                b = bins[i]
                if b.admits(shape.cls, self.index):
                    while b.can_add(shape, self.index):
                        self.packing.place(shape, b)
                    if shape.remaining <= 0:
                        return True
        while shape.remaining > 0:
            option = self.packing.best_option(shape, zone)
            if option is None:
                return False
            node = self.packing.open_node(option)
            self.packing.place(shape, node)
            while node.can_add(shape, self.index):
                self.packing.place(shape, node)
        return True

    def gang_failure(self, name: str, shapes: list[Shape], zones: list[str], fixed: set[str] | None) -> str:
        for shape in shapes:
            pod = shape.pods[shape.next]
            reason = static_reason(pod, self.index.inp, self.index.options, shape.cls.options)
            if reason is not None and not self.index.bin_zones(shape.cls):
                return f"gang {name}: member {pod.key} cannot be placed: {reason}"
        members = sum(s.remaining for s in shapes)
        blocker = self.limit_blocker(shapes, zones)
        if blocker:
            return f"gang {name}: its {members} pods fit in {blocker[0]} only beyond a limit: {blocker[1]}"
        if fixed:
            where = ", ".join(sorted(fixed))
            return f"gang {name}: its {members} pending pods do not fit in {where}, where its members run"
        if not zones:
            return f"gang {name}: its members have no availability zone in common"
        return f"gang {name}: its {members} pods do not all fit in any single availability zone"

    def fail_gang(self, shapes: list[Shape], reason: str) -> None:
        for shape in shapes:
            self.packing.fail(shape, reason)

    def limit_blocker(self, shapes: list[Shape], zones: list[str]) -> tuple[str, str] | None:
        """The first zone the gang fits with NodePool limits lifted, and the limit it would exceed there."""
        assert self.packing.journal is not None
        self.packing.ignore_limits = True
        try:
            for zone in zones:
                mark = len(self.packing.journal)
                placed = all(self.place_gang_shape(shape, zone) for shape in shapes)
                opened = [
                    b
                    for op, _, b, _ in self.packing.journal[mark:]
                    if isinstance(b, NewNode) and op == "open"
                ]
                self.packing.rollback(mark)
                if placed:
                    exceeded = self.exceeded_limit(opened)
                    if exceeded:
                        return zone, exceeded
        finally:
            self.packing.ignore_limits = False
        return None

    def exceeded_limit(self, opened: list[NewNode]) -> str | None:
        """Which NodePool limit adding the `opened` nodes would exceed, in words."""
        extra: dict[str, dict[str, int]] = {}
        for b in opened:
            assert b.option is not None
            adds = extra.setdefault(b.option.node_pool.name, {})
            for resource, amount in (*b.option.capacity.items(), ("nodes", 1)):
                adds[resource] = adds.get(resource, 0) + amount
        for pool in self.index.inp.node_pools:
            adds = extra.get(pool.name, {})
            used = self.packing.usage.get(pool.name, {})
            for resource, limit in pool.limits:
                if used.get(resource, 0) + adds.get(resource, 0) > limit:
                    return (
                        f"NodePool {pool.name} limits {resource} to {format_resource(resource, limit)}, "
                        f"{format_resource(resource, used.get(resource, 0))} is in use and the gang needs "
                        f"{format_resource(resource, adds.get(resource, 0))} more"
                    )
        return None
