"""Right-sizing new nodes once packing is done.

A node is opened with the option that is cheapest per pod of the shape that opened it, which favours
large instance types; what ends up on it is often much less. Karpenter launches the cheapest instance
type that holds a NodeClaim's pods, and this does the same after packing, in two steps:

* resize: each new node switches to the cheapest option that holds its packed pods;
* split: a node whose pods fit on several nodes of an option that together cost less (a p5 holding
  1+1+2+4 GPUs of small pods, where two or three g5 would do) is replaced by those nodes.

An option a node may switch to must be compatible with every class placed on it (labels, taints),
hold what it gets (allocatable after DaemonSet overhead), be available, keep the NodePool within its
limits, and keep the node's NodePool, rank tier (NodePool weight, Spot or On-Demand, placement score)
zone and topology domains (the values of every label a topology group counts by), so no gang leaves
its zone and no spread or affinity count moves.
A split moves pods to fresh hosts: any subset of a node's pods keeps their anti-affinity and hostname
spread satisfied, but not a hostname affinity, so nodes with such pods are not split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hpscaler.model import LABEL_HOSTNAME, CapacityType, Pod
from hpscaler.scheduling import topology as topo
from hpscaler.scheduling.index import RoundIndex
from hpscaler.scheduling.options import ON_DEMAND_TIER, SPOT_TIER, Option
from hpscaler.scheduling.packing import EPS, Bin, Vector
from hpscaler.scheduling.placement import Packing
from hpscaler.scheduling.ranking import SizeTable

_CHEAPER = 1e-9  # a change must save more than float noise
_SPLIT_TRIES = 3  # options tried per node, cheapest lower bound first

PeerKey = tuple[str, tuple[int, int, float], tuple[str, int]]
SizeKey = tuple[PeerKey, frozenset[int]]
Demands = dict[tuple[tuple[str, int], ...], tuple[list[float], Vector]]  # a pod's requests -> its demand row


def right_size(sizer: Sizer, split: bool = True) -> None:
    """Resize, then (unless `split` is False) split, the new nodes of a finished packing (see the module
    docstring)."""
    packing = sizer.packing
    _apply_switches(packing, sizer.cheaper_options(packing.new_bins))
    if not split:
        return
    pieces = _apply_splits(sizer.index, packing, sizer.cheaper_splits(packing.new_bins))
    if pieces:
        _apply_switches(packing, sizer.cheaper_options(pieces))


class Sizer:
    """The options each new node may switch to, built once per round."""

    def __init__(self, index: RoundIndex, packing: Packing) -> None:
        self.index = index
        self.packing = packing
        self.peers: dict[PeerKey, list[Option]] = {}
        self.peer_keys: dict[int, PeerKey] = {}  # option index -> its peer key
        # Without topology keys the peer key is one per (pool, group, zone): compute it once for each.
        by_offering: dict[tuple[str, str, str], PeerKey] = {}
        for o in index.options:
            if (o.group.name, o.zone) in index.inp.unavailable:
                continue
            if index.topology_keys:
                key = self.peer_key(o)
            else:
                offering = (o.node_pool.name, o.group.name, o.zone)
                key = by_offering.get(offering) or by_offering.setdefault(offering, self.peer_key(o))
            self.peer_keys[o.index] = key
            self.peers.setdefault(key, []).append(o)
        self.tables: dict[SizeKey, tuple[SizeTable, Vector]] = {}

    def peer_key(self, option: Option) -> PeerKey:
        """NodePool, rank tier, zone and topology domains of `option`."""
        domains = (option.zone, self.index.option_domains(option))
        tier = SPOT_TIER if option.capacity_type is CapacityType.SPOT else ON_DEMAND_TIER
        return (option.node_pool.name, (-option.node_pool.weight, tier, -option.score), domains)

    def by_key(self, bins: Sequence[Bin], min_pods: int) -> dict[SizeKey, list[Bin]]:
        found: dict[SizeKey, list[Bin]] = {}
        classes = self.index.classes
        for b in bins:
            option = b.option
            if option is not None and len(b.placed) >= min_pods:
                sets = frozenset(classes[c].options_key for c in b.classes)
                peer = self.peer_keys.get(option.index) or self.peer_key(option)
                found.setdefault((peer, sets), []).append(b)
        return found

    def table(self, key: SizeKey) -> tuple[SizeTable, Vector]:
        """The options bins of `key` may switch to, cheapest first, and per resource the lowest price per
        unit among the options up to each one (a bound on what any number of them costs)."""
        found = self.tables.get(key)
        if found is None:
            allowed = frozenset.intersection(*(self.index.option_id_sets[k] for k in key[1]))
            options = [o for o in self.peers.get(key[0], ()) if o.index in allowed]
            table = SizeTable(options, self.index.option_vectors)
            with np.errstate(divide="ignore", invalid="ignore"):
                unit = np.where(table.alloc > 0, table.price[:, None] / table.alloc, np.inf)
            best_unit = np.minimum.accumulate(unit, axis=0) if len(options) else unit
            found = self.tables[key] = (table, best_unit)
        return found

    def cheaper_options(self, bins: Sequence[Bin]) -> list[tuple[Bin, Option]]:
        """For each bin a cheaper single option can hold, the cheapest such option within limits."""
        packing = self.packing
        switches: list[tuple[Bin, Option]] = []
        for key, members in self.by_key(bins, 1).items():
            table = self.table(key)[0]
            loads = np.array([b.capacity - b.residual for b in members])
            for row, (b, pos) in enumerate(zip(members, table.cheapest(loads), strict=True)):
                current = b.option
                assert current is not None
                if pos < 0 or table.price[pos] >= current.price - _CHEAPER:
                    continue
                choice = table.options[pos]
                if not _within_limits(packing, current, choice, 1):
                    # The cheapest may break a limit: take the next cheapest that holds the load.
                    holds = np.flatnonzero(np.all(loads[row] <= table.alloc + EPS, axis=1))
                    choice = next(
                        (
                            table.options[p]
                            for p in holds.tolist()
                            if table.price[p] < current.price - _CHEAPER
                            and _within_limits(packing, current, table.options[p], 1)
                        ),
                        current,
                    )
                if choice is not current:
                    switches.append((b, choice))
        return switches

    def cheaper_splits(
        self, bins: Sequence[Bin], ceiling: float | None = None
    ) -> list[tuple[Bin, Option, list[list[Pod]]]]:
        """For each bin whose pods fit on several nodes of one option that cost less in all (than the
        bin's option, or than `ceiling`), those nodes."""
        index = self.index
        splits: list[tuple[Bin, Option, list[list[Pod]]]] = []
        demands: Demands = {}
        for key, members in self.by_key(bins, 2).items():
            members = [b for b in members if not any(_host_affinity(index, c) for c in b.classes)]
            table, best_unit = self.table(key)
            if not members or not table.options:
                continue
            alloc, price = table.alloc, table.price
            loads = np.array([b.capacity - b.residual for b in members])
            if ceiling is not None:
                current = np.full(len(members), ceiling)
            else:
                current = np.array([b.option.price if b.option else 0.0 for b in members])
            # Two or more nodes of an option cost less only if it costs less than half of the current one.
            cuts = np.searchsorted(price, current / 2, side="left")
            for row, b in enumerate(members):
                cut = int(cuts[row])
                if cut == 0:
                    continue
                load = loads[row]
                need = load > 0
                bound = max(2 * float(price[0]), float(np.max(load[need] * best_unit[cut - 1, need])))
                if bound >= current[row] - _CHEAPER:
                    continue
                found = _best_split(index, b, load, alloc[:cut], price[:cut], float(current[row]), demands)
                if found is not None:
                    choice, parts = found
                    splits.append((b, table.options[choice], parts))
        return splits

    def beating_split(self, b: Bin) -> Option | None:
        """The option of several nodes that hold what is packed on `b` for less than any single node
        does (None: no such split)."""
        assert b.option is not None
        single = self.cheaper_options([b])
        best = single[0][1].price if single else b.option.price
        return next(
            (
                option
                for _, option, parts in self.cheaper_splits([b], ceiling=best)
                if _within_limits(self.packing, b.option, option, len(parts))
            ),
            None,
        )


def _best_split(
    index: RoundIndex,
    b: Bin,
    load: Vector,
    alloc: Vector,
    price: Vector,
    current: float,
    demands: Demands,
) -> tuple[int, list[list[Pod]]] | None:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(alloc > 0, load / np.where(alloc > 0, alloc, 1.0), np.where(load > 0, np.inf, 0.0))
    nodes = np.maximum(2.0, np.ceil(np.max(ratio, axis=1) - EPS))
    bounds = nodes * price
    best: tuple[int, list[list[Pod]]] | None = None
    best_cost = current - _CHEAPER
    for i in np.argsort(bounds, kind="stable")[:_SPLIT_TRIES].tolist():
        if bounds[i] >= best_cost:
            break
        parts = _first_fit(index, b.placed, alloc[i], demands)
        if parts is not None and len(parts) * float(price[i]) < best_cost:
            best, best_cost = (i, parts), len(parts) * float(price[i])
    return best


def _first_fit(
    index: RoundIndex,
    pods: Sequence[Pod],
    alloc: Vector,
    demands: Demands,
) -> list[list[Pod]] | None:
    """First-fit decreasing (by largest share) of `pods` onto nodes of `alloc`; None if one is too big."""
    capacity = alloc.tolist()
    sized: list[tuple[float, int, Pod, Vector]] = []
    for order, pod in enumerate(pods):
        key = tuple(pod.requests.items())
        found = demands.get(key)
        if found is None:
            vector = index.vector(pod.requests, pods=1)
            found = demands[key] = (vector.tolist(), vector)
        demand, row = found
        # A few resources per pod: plain floats beat numpy calls here.
        share = 0.0
        for need, cap in zip(demand, capacity, strict=True):
            if need > 0:
                if cap <= 0:
                    return None
                share = max(share, need / cap)
        if share > 1.0 + EPS:
            return None
        sized.append((-share, order, pod, row))
    sized.sort(key=lambda item: (item[0], item[1]))
    free = np.empty((len(sized), len(capacity)))  # what each part has left, one row per part
    parts: list[list[Pod]] = []
    for _, _, pod, row in sized:
        count = len(parts)
        if count:
            room = np.all(row <= free[:count] + EPS, axis=1)
            first = int(room.argmax())
            if room[first]:
                free[first] -= row
                parts[first].append(pod)
                continue
        free[count] = alloc - row
        parts.append([pod])
    return parts


def _host_affinity(index: RoundIndex, cls: int) -> bool:
    return any(group.key == topo.HOSTNAME for group, _ in index.classes[cls].topology.affinity)


def _within_limits(packing: Packing, old: Option, new: Option, count: int) -> bool:
    """Whether replacing a node of `old` by `count` nodes of `new` keeps the NodePool within its limits."""
    usage = packing.usage.get(new.node_pool.name, {})
    for name, limit in new.node_pool.limits:
        grow = count - 1 if name == "nodes" else count * new.capacity.get(name, 0) - old.capacity.get(name, 0)
        if grow > 0 and usage.get(name, 0) + grow > limit:
            return False
    return True


def _switch(packing: Packing, b: Bin, option: Option) -> None:
    old = b.option
    assert old is not None
    # Options of one instance type share their capacity dict: a switch within the type and NodePool
    # leaves the usage as it is.
    if old.capacity is not option.capacity or old.node_pool is not option.node_pool:
        packing.add_usage(old.node_pool.name, old.capacity, sign=-1)
        packing.add_usage(option.node_pool.name, option.capacity)
    cap = packing.index.option_vectors[option.index]
    b.residual = cap - (b.capacity - b.residual)
    b.capacity, b.option, b.signature = cap, option, option.index
    if option.group is not old.group:
        packing.taken_names.discard(b.name)
        b.name = packing.fresh_name(option.group.name, int(b.name.rsplit("-", 1)[1]))
    b.labels = {**option.labels, LABEL_HOSTNAME: b.name}


def _apply_switches(packing: Packing, switches: list[tuple[Bin, Option]]) -> None:
    for b, option in switches:
        _switch(packing, b, option)


def _apply_splits(
    index: RoundIndex, packing: Packing, splits: list[tuple[Bin, Option, list[list[Pod]]]]
) -> list[Bin]:
    """Replace each bin by its parts (the first part stays on the bin); the bins of all parts."""
    pieces: list[Bin] = []
    for b, option, parts in splits:
        old = b.option
        assert old is not None
        if not _within_limits(packing, old, option, len(parts)):
            continue
        _switch(packing, b, option)
        cap = b.capacity
        for number, part in enumerate(parts):
            used = np.sum([index.vector(p.requests, pods=1) for p in part], axis=0)
            if number == 0:
                piece = b
                piece.placed = part
                piece.residual = cap - used
            else:
                piece = packing.open_node(option)
                piece.placed, piece.residual, piece.classes = part, cap - used, set(b.classes)
            pieces.append(piece)
    return pieces
