"""Lower bounds the packing results are compared with: per-resource volume bounds and LP relaxations."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from hpscaler.model import Pod

RESOURCES = ("cpu", "memory", "nvidia.com/gpu", "pods")


def demand(pods: Sequence[Pod]) -> dict[str, int]:
    """Summed requests, counting one pod slot per pod."""
    total: dict[str, int] = {"pods": len(pods)}
    for pod in pods:
        for name, amount in pod.requests.items():
            total[name] = total.get(name, 0) + amount
    return total


def volume_bound(pods: Sequence[Pod], capacity: Mapping[str, int]) -> int:
    """max_d ceil(sum demand_d / cap_d): no packing onto nodes of this size can use fewer nodes."""
    need = demand(pods)
    worst = 0
    for name, amount in need.items():
        if amount <= 0:
            continue
        cap = capacity.get(name, 0)
        if cap <= 0:
            raise ValueError(f"resource {name} is requested but the node has none")
        worst = max(worst, math.ceil(amount / cap - 1e-9))
    return worst


@dataclass(frozen=True)
class NodeKind:
    """A node one could buy: its allocatable resources and hourly price."""

    name: str
    allocatable: Mapping[str, int]
    price: float


def aggregate_lp(pods: Sequence[Pod], kinds: Sequence[NodeKind]) -> float:
    """min sum price_k x_k  s.t.  sum_k alloc_k,d x_k >= demand_d for every d, x >= 0 (HiGHS).

    Fractional nodes, pooled demand: a valid lower bound on the cost of any packing.
    """
    need = demand(pods)
    dims = [d for d in RESOURCES if need.get(d, 0) > 0]
    a_ub = -np.array([[k.allocatable.get(d, 0) / need[d] for k in kinds] for d in dims])
    b_ub = -np.ones(len(dims))
    res = linprog([k.price for k in kinds], A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"LP failed: {res.message}")
    return float(res.fun)


def class_lp(
    classes: Sequence[tuple[Sequence[Pod], Sequence[int]]], kinds: Sequence[NodeKind], objective: str = "cost"
) -> float:
    """LP relaxation with pod classes: each class's demand is split over the kinds it may use.

    Variables x_k (nodes of kind k, fractional) and y_ck (share of class c's demand on kind k):
      sum_k y_ck = 1 for every class;  sum_c y_ck * demand_c,d <= alloc_k,d * x_k for every k, d.
    Tighter than `aggregate_lp` when some pods cannot use some kinds (GPU pods on CPU nodes). With
    objective "nodes" it minimises the node count instead of the cost.
    """
    dims = list(RESOURCES)
    nk = len(kinds)
    pairs = [(c, k) for c, (_, allowed) in enumerate(classes) for k in allowed]
    nvar = nk + len(pairs)
    cost = np.zeros(nvar)
    for k, kind in enumerate(kinds):
        cost[k] = kind.price if objective == "cost" else 1.0
    needs = [demand(pods) for pods, _ in classes]
    rows, rhs = [], []
    for k, kind in enumerate(kinds):
        for d in dims:
            row = np.zeros(nvar)
            row[k] = -kind.allocatable.get(d, 0)
            touched = False
            for j, (c, kk) in enumerate(pairs):
                if kk == k and needs[c].get(d, 0):
                    row[nk + j] = needs[c][d]
                    touched = True
            if touched:
                rows.append(row)
                rhs.append(0.0)
    eq_rows = []
    for c in range(len(classes)):
        row = np.zeros(nvar)
        for j, (cc, _) in enumerate(pairs):
            if cc == c:
                row[nk + j] = 1.0
        eq_rows.append(row)
    res = linprog(
        cost,
        A_ub=np.array(rows),
        b_ub=np.array(rhs),
        A_eq=np.array(eq_rows),
        b_eq=np.ones(len(classes)),
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"LP failed: {res.message}")
    return float(res.fun)


def _l2_one_dimension(weights: Sequence[int], cap: int) -> int:
    """Martello and Toth's L2 bound for 1-D bin packing (max over the thresholds alpha)."""
    items = sorted((w for w in weights if w > 0), reverse=True)
    if not items:
        return 0
    best = math.ceil(sum(items) / cap)
    half = cap / 2
    for alpha in {0, *(w for w in items if w <= half)}:
        j1 = [w for w in items if w > cap - alpha]
        j2 = [w for w in items if cap - alpha >= w > half]
        j3 = sum(w for w in items if half >= w >= alpha)
        room = len(j2) * cap - sum(j2)
        best = max(best, len(j1) + len(j2) + max(0, math.ceil((j3 - room) / cap - 1e-9)))
    return best


def l2_bound(pods: Sequence[Pod], capacity: Mapping[str, int]) -> int:
    """max over resources of the 1-D L2 bound: at least the volume bound, tighter with big pods."""
    best = 0
    for name in RESOURCES:
        weights = [1 if name == "pods" else p.requests.get(name, 0) for p in pods]
        if any(weights) and capacity.get(name, 0) > 0:
            best = max(best, _l2_one_dimension(weights, capacity[name]))
    return best


def ffd_nodes(pods: Sequence[Pod], capacity: Mapping[str, int]) -> int:
    """The best of three first-fit-decreasing orderings (max share, sum of shares, largest GPU/CPU).

    Not a bound: a reference for how far plain heuristics get when the volume bound is loose.
    """
    dims = [d for d in RESOURCES if capacity.get(d, 0) > 0]

    def share(pod: Pod, d: str) -> float:
        return (1 if d == "pods" else pod.requests.get(d, 0)) / capacity[d]

    keys = (
        lambda p: max(share(p, d) for d in dims),
        lambda p: sum(share(p, d) for d in dims),
        lambda p: tuple(share(p, d) for d in reversed(dims)),
    )
    best = math.inf
    for key in keys:
        bins: list[list[float]] = []
        for pod in sorted(pods, key=key, reverse=True):
            need = [1 if d == "pods" else pod.requests.get(d, 0) for d in dims]
            for b in bins:
                if all(b[i] + need[i] <= capacity[d] for i, d in enumerate(dims)):
                    for i in range(len(dims)):
                        b[i] += need[i]
                    break
            else:
                bins.append([float(x) for x in need])
        best = min(best, len(bins))
    return int(best)
