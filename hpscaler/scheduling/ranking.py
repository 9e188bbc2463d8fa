"""Ranking launch options for a pod's demand, and right-sizing a packed node.

Everything in an option's rank but the dynamic checks (NodePool limits, topology) depends only on the
option and the demand: NodePool weight, Spot before On-Demand, placement score, price per pod that fits,
NodeClass position. So the options are ranked once per distinct demand, vectorised over the option
matrix, and a new node takes the first ranked option that passes the dynamic checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from hpscaler.model import CapacityType
from hpscaler.scheduling.options import ON_DEMAND_TIER, SPOT_TIER, Option
from hpscaler.scheduling.packing import EPS, Vector

_BATCH = 1 << 16  # elements of a temporary of `OptionTable.prepare` (demands x options)


class OptionTable:
    """Launch options (the ones a set of pod classes is compatible with) as arrays.

    Options are kept in their static order (NodePool weight, tier, placement score; then NodeClass
    position and index) and cut into blocks of equal (weight, tier, score). Only the price per pod
    depends on the demand, so a demand's ranking is each block re-sorted by it, computed block by block
    as a caller walks on (most stop in the first block).
    """

    def __init__(self, options: Sequence[Option], vectors: Sequence[Vector], usable: Sequence[bool]) -> None:
        spot = CapacityType.SPOT
        keys = [
            (
                -o.node_pool.weight,
                SPOT_TIER if o.capacity_type is spot else ON_DEMAND_TIER,
                -o.score,
                o.class_position,
                o.index,
            )
            for o in options
        ]
        static = sorted(range(len(options)), key=keys.__getitem__)
        self.options = [options[i] for i in static]
        width = len(vectors[0]) if len(vectors) else 0
        self.alloc: Vector = np.array([vectors[o.index] for o in self.options]).reshape(len(static), width)
        self.usable = np.array([usable[i] for i in static], dtype=bool)
        self.price = np.array([o.price for o in self.options], dtype=np.float64)
        heads = [keys[i][:3] for i in static]
        self.blocks: list[tuple[int, int]] = []
        start = 0
        for end in range(1, len(static) + 1):
            if end == len(static) or heads[end] != heads[start]:
                self.blocks.append((start, end))
                start = end
        self._ranked: dict[tuple[float, ...], list[list[int] | None]] = {}
        # Demand -> the position of its best option in the first block, -1 if none (see `prepare`).
        self._first: dict[tuple[float, ...], int] = {}
        self._distinct: npt.NDArray[np.int64] | None = None  # the first block's options `prepare` ranks

    def prepare(self, demands: Vector) -> None:
        """Work out the best option of the first block for each row of `demands`, all rows at once.

        When nearly every demand opens at most one node (pods of many distinct sizes), ranking each on its
        own costs a dozen small numpy calls per node; most callers take the first option ranked, so that
        is computed for all the demands in a few passes, and the rest of a ranking only for a caller that
        walks on (`ranked`).
        """
        if not self.blocks or not len(demands):
            return
        if self._distinct is None:
            start, end = self.blocks[0]
            # Usable options only, and of options alike (allocatable and price; e.g. one type in two
            # zones) the first, which ranks before the others for every demand.
            usable = np.flatnonzero(self.usable[start:end]) + start
            table = np.column_stack((self.alloc[usable], self.price[usable])).tolist()
            alike: dict[tuple[float, ...], int] = {}
            for position, row in zip(usable.tolist(), table, strict=True):
                alike.setdefault(tuple(row), position)
            self._distinct = np.array(list(alike.values()), dtype=np.int64)
        keep = self._distinct
        if not len(keep):
            self._first.update((key, -1) for key in map(tuple, demands.tolist()))
            return
        alloc = self.alloc[keep]
        price = self.price[keep]
        columns = np.ascontiguousarray(alloc.T)  # per resource, every option's allocatable
        room = columns + EPS
        rows = max(1, _BATCH // len(alloc))  # bound the (demands x options) temporaries
        for top in range(0, len(demands), rows):
            demand = demands[top : top + rows]
            asks = np.ascontiguousarray(demand.T)[:, :, None]  # per resource, a column of the demands
            # As `_rank`, resource by resource (a reduction over a short last axis is slow), in place: the
            # options that do not hold the demand, and pods per node by the resources asked for.
            short = np.zeros((len(demand), len(alloc)), dtype=bool)
            fewest = np.full(short.shape, np.inf)
            ratio = np.empty(short.shape)
            for dim, ask in enumerate(asks):
                short |= ask > room[dim]
                asked = ask > 0
                if asked.all():
                    np.divide(columns[dim], ask, out=ratio)
                elif asked.any():
                    np.divide(columns[dim], np.where(asked, ask, 1.0), out=ratio)
                    ratio[~asked[:, 0]] = np.inf
                else:
                    continue
                np.minimum(fewest, ratio, out=fewest)
            unasked = np.isinf(fewest[:, 0])  # asks for no resource: one pod per node
            np.floor(fewest, out=fewest)
            np.maximum(fewest, 1.0, out=fewest)
            fewest[unasked] = 1.0
            cost = np.divide(price, fewest, out=fewest)
            cost[short] = np.inf
            best = cost.argmin(axis=1)
            found = ~short[np.arange(len(demand)), best]
            firsts = np.where(found, keep[best], -1).tolist()
            self._first.update(zip(map(tuple, demand.tolist()), firsts, strict=True))

    def ranked(self, demand: Vector) -> Iterator[Option]:
        """Usable options that can hold one pod of `demand`, best first (the order is cached per demand)."""
        key = tuple(demand.tolist())
        options = self.options
        blocks = self._ranked.get(key)
        first = -1  # the position `prepare` found first, and already yielded
        if blocks is None:
            prepared = self._first.get(key)
            blocks = [None] * len(self.blocks)
            if prepared is not None:
                if prepared < 0:
                    blocks[0] = []  # no option of the first block holds the demand
                else:
                    first = prepared
                    yield options[first]
            blocks = self._ranked.setdefault(key, blocks)
        for number, (start, end) in enumerate(self.blocks):
            order = blocks[number]
            if order is None:
                order = blocks[number] = self._rank(demand, start, end)
            for i in order[1:] if number == 0 and first >= 0 else order:
                yield options[i]

    def _rank(self, demand: Vector, start: int, end: int) -> list[int]:
        """Positions of the block's usable options that hold `demand`, by price per pod (stable)."""
        alloc = self.alloc[start:end]
        ok = np.flatnonzero(self.usable[start:end] & np.all(demand <= alloc + EPS, axis=1))
        needed = demand > 0
        if needed.any():
            per_node = np.maximum(1.0, np.floor(np.min(alloc[ok][:, needed] / demand[needed], axis=1)))
        else:
            per_node = np.ones(len(ok))
        order = np.argsort(self.price[start:end][ok] / per_node, kind="stable")
        positions: list[int] = (ok[order] + start).tolist()
        return positions


class SizeTable:
    """Options a packed node may switch to (same NodePool, rank tier and topology domains), cheapest first."""

    def __init__(self, options: Sequence[Option], vectors: Sequence[Vector]) -> None:
        self.options = sorted(options, key=lambda o: (o.price, o.class_position, o.index))
        width = len(vectors[0]) if len(vectors) else 0
        self.alloc: Vector = np.array([vectors[o.index] for o in self.options]).reshape(-1, width)
        self.price = np.array([o.price for o in self.options], dtype=np.float64)
        # When every resource grows with the price (as in most instance families), what holds a load is a
        # suffix of the list, found by a binary search per resource.
        self.nested = bool(len(self.options) < 2 or np.all(np.diff(self.alloc, axis=0) >= 0))

    def cheapest(self, loads: Vector) -> npt.NDArray[np.int64]:
        """Per row of `loads`, the position of the cheapest option whose allocatable holds it (-1: none)."""
        out = np.full(len(loads), -1, dtype=np.int64)
        if not self.options or not len(loads):
            return out
        if self.nested:
            first = np.zeros(len(loads), dtype=np.int64)
            for d in range(self.alloc.shape[1]):
                found = np.searchsorted(self.alloc[:, d], loads[:, d] - EPS, side="left")
                first = np.maximum(first, found)
            return np.where(first < len(self.options), first, -1)
        chunk = max(1, 2_000_000 // max(1, self.alloc.size))  # bound the (loads x options) temporary
        for start in range(0, len(loads), chunk):
            part = loads[start : start + chunk]
            holds = np.all(part[:, None, :] <= self.alloc[None, :, :] + EPS, axis=2)
            first = np.argmax(holds, axis=1)
            out[start : start + chunk] = np.where(holds[np.arange(len(part)), first], first, -1)
        return out
