"""Gangs: placed first, all-or-nothing and in a single zone.

A gang goes to the zone of its members already running, if any, else to the zone its nodes in flight
were launched in (`SchedulingInput.gang_zones`) if it fits there, else to the best-ranked zone every
member could use; every tentative placement is journaled and undone when a gang does not fit a zone.
"""

from __future__ import annotations

import numpy as np

from hpscaler.model import Pod
from hpscaler.quantity import format_resource
from hpscaler.scheduling.explain import static_reason
from hpscaler.scheduling.packing import EPS, Bin, Shape
from hpscaler.scheduling.placement import Placer
from hpscaler.scheduling.types import Unschedulable


def gang_key(pod: Pod) -> str:
    """`namespace/name` of the pod's gang ("" if none). Parsers qualify the name already (a Kubernetes
    name holds no "/"); a bare name is qualified with the pod's namespace."""
    if pod.gang is None:
        return ""
    name = pod.gang.name
    return name if "/" in name else f"{pod.namespace}/{name}"


class GangPlacer(Placer):
    """Placement of gangs on top of the round's placement primitives."""

    def place_gangs(self) -> None:
        gangs: dict[str, list[Shape]] = {}
        for shape in self.shapes:
            if shape.gang:
                gangs.setdefault(shape.gang, []).append(shape)
        if not gangs:
            return
        running: dict[str, int] = {}
        running_zones: dict[str, set[str]] = {}
        for node in self.inp.nodes:
            for pod in node.pods:
                if pod.gang:
                    key = gang_key(pod)
                    running[key] = running.get(key, 0) + 1
                    if node.zone:
                        running_zones.setdefault(key, set()).add(node.zone)
        self.journal = []
        for name in sorted(gangs, key=lambda g: (-sum(s.remaining for s in gangs[g]), g)):
            shapes = sorted(gangs[name], key=lambda s: (-self.sizes[s.index], s.index))
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
            started = self.inp.gang_zones.get(name)
            if started in zones:  # capacity is on its way there: finish the gang in that zone first
                zones = [started, *(z for z in zones if z != started)]
            if not self.place_gang(shapes, zones):
                self.fail_gang(shapes, self.gang_failure(name, shapes, zones, fixed))
        self.journal = None

    def gang_zones(self, shapes: list[Shape]) -> list[str]:
        """Zones every member could use, best-ranked first."""
        ranked: dict[str, tuple[object, ...]] = {}
        common: set[str] | None = None
        for shape in shapes:
            zones = {o.zone for o in shape.cls.options} | self.bin_zones(shape.cls)
            zones.discard("")
            common = zones if common is None else common & zones
            for option in shape.cls.options:
                if (option.group.name, option.zone) in self.inp.unavailable:
                    continue
                key = option.rank_key()
                if option.zone not in ranked or key < ranked[option.zone]:
                    ranked[option.zone] = key
        return sorted(common or set(), key=lambda z: (z not in ranked, ranked.get(z, ()), z))

    def place_gang(self, shapes: list[Shape], zones: list[str]) -> bool:
        assert self.journal is not None
        for zone in zones:
            mark = len(self.journal)
            if all(self.place_gang_shape(shape, zone) for shape in shapes):
                return True
            self.rollback(mark)
        return False

    def place_gang_shape(self, shape: Shape, zone: str) -> bool:
        bins = [*self.zone_bins.get(zone, ()), *self.new_zone_bins.get(zone, ())]
        if bins:
            # One vectorised pass finds the nodes of the zone with room, instead of a check per node.
            residual = np.array([b.residual for b in bins])
            for i in np.flatnonzero(np.all(shape.demand <= residual + EPS, axis=1)):
                b = bins[i]
                if self.compatible(shape.cls, b.signature):
                    while self.can_place(shape, b):
                        self.place(shape, b)
                    if shape.remaining <= 0:
                        return True
        while shape.remaining > 0:
            option = self.best_option(shape, zone)
            if option is None:
                return False
            b = self.open_bin(option)
            self.place(shape, b)
            while self.can_place(shape, b):
                self.place(shape, b)
        return True

    def gang_failure(self, name: str, shapes: list[Shape], zones: list[str], fixed: set[str] | None) -> str:
        for shape in shapes:
            pod = shape.pods[shape.next]
            reason = static_reason(pod, self.inp, self.options, shape.cls.options)
            if reason is not None and not self.bin_zones(shape.cls):
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
            while shape.remaining > 0:
                self.unschedulable.append(Unschedulable(shape.pods[shape.next].key, reason))
                shape.next += 1
                shape.cls.left -= 1

    def limit_blocker(self, shapes: list[Shape], zones: list[str]) -> tuple[str, str] | None:
        """The first zone the gang fits with NodePool limits lifted, and the limit it would exceed there."""
        assert self.journal is not None
        self.ignore_limits = True
        try:
            for zone in zones:
                mark = len(self.journal)
                placed = all(self.place_gang_shape(shape, zone) for shape in shapes)
                opened = [b for op, _, b, _ in self.journal[mark:] if op == "open"]
                self.rollback(mark)
                if placed:
                    exceeded = self.exceeded_limit(opened)
                    if exceeded:
                        return zone, exceeded
        finally:
            self.ignore_limits = False
        return None

    def exceeded_limit(self, opened: list[Bin]) -> str | None:
        """Which NodePool limit adding the `opened` nodes would exceed, in words."""
        extra: dict[str, dict[str, int]] = {}
        for b in opened:
            assert b.option is not None
            adds = extra.setdefault(b.option.node_pool.name, {})
            for resource, amount in (*b.option.capacity.items(), ("nodes", 1)):
                adds[resource] = adds.get(resource, 0) + amount
        for pool in self.inp.node_pools:
            adds = extra.get(pool.name, {})
            used = self.usage.get(pool.name, {})
            for resource, limit in pool.limits:
                if used.get(resource, 0) + adds.get(resource, 0) > limit:
                    return (
                        f"NodePool {pool.name} limits {resource} to {format_resource(resource, limit)}, "
                        f"{format_resource(resource, used.get(resource, 0))} is in use and the gang needs "
                        f"{format_resource(resource, adds.get(resource, 0))} more"
                    )
        return None
