"""`SpreadCounts`: the per-domain counts `fill` reads stay equal to a recount as pods move and nodes go."""

from __future__ import annotations

import random

import numpy as np

from hpscaler.model import LABEL_ZONE, LabelSelector, Node, Pod, Requirement, TopologySpread
from hpscaler.scheduling.disruption.spreads import SpreadCounts, Tally, matching

ZONES = ("a", "b", "c")
SELECTORS = (
    LabelSelector((("app", "web"),)),
    LabelSelector((("app", "db"),)),
    LabelSelector((("app", "web"), ("tier", "front"))),
    LabelSelector(match_expressions=(Requirement("app", "In", ("web", "db")),)),
)


def _pod(rng: random.Random, serial: int) -> Pod:
    labels = {"app": rng.choice(("web", "db", "cache"))}
    if rng.random() < 0.5:
        labels["tier"] = "front"
    return Pod(rng.choice(("default", "other")), f"p{serial}", {"cpu": 100}, labels=labels)


def _recount(
    nodes: list[Node], pods: list[list[Pod]], alive: np.ndarray, selector: LabelSelector, ns: str
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if alive[i]:
            matched = matching(pods[i], selector, ns)
            if matched:
                zone = node.labels[LABEL_ZONE]
                counts[zone] = counts.get(zone, 0) + matched
    return counts


def test_counts_follow_moves_and_removals() -> None:
    rng = random.Random(7)
    nodes = [Node(f"n{i}", {LABEL_ZONE: ZONES[i % 3]}, {"cpu": 8000}) for i in range(12)]
    pods = [[_pod(rng, i * 10 + j) for j in range(rng.randrange(0, 5))] for i in range(12)]
    alive = np.ones(12, dtype=bool)
    spreads = SpreadCounts(nodes, pods, alive)
    spread = [TopologySpread(LABEL_ZONE, 1, "DoNotSchedule", s) for s in SELECTORS]
    for s in spread[:3]:
        for ns in ("default", "other"):
            spreads.counts(s, ns)  # read before the changes: kept current from here on
    for step in range(60):
        row = rng.randrange(12)
        if not alive[row]:
            continue
        if step % 4 == 3:
            spreads.add(row, pods[row], -1)
            alive[row] = False
        else:
            moved = [_pod(rng, 1000 + step)]
            spreads.add(row, moved, 1)
            pods[row].extend(moved)
        if step == 10:
            spreads.counts(spread[3], "default")  # read in the middle
    for s in spread:
        for ns in ("default", "other"):
            got = {d: c for d, c in spreads.counts(s, ns).items() if c}
            assert got == _recount(nodes, pods, alive, s.selector, ns), (s.selector, ns)


def test_a_tally_counts_as_matching_does() -> None:
    rng = random.Random(3)
    pods = [_pod(rng, i) for i in range(20)]
    tally = Tally(pods)
    for selector in SELECTORS:
        for ns in ("default", "other"):
            assert tally.matching(selector, ns) == matching(pods, selector, ns)
