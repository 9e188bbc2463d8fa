"""Topology-spread counts over the nodes that stay during a consolidation decision.

`fill` checks DoNotSchedule spreads (zone and the like) against how many pods each selector selects
per domain. Those counts are built the first time a selector is read and kept current as pods move
and nodes leave. Selectors of one label (the common case: `app: web`) are served from one census
per topology key, so a pod that moves is looked up by its labels rather than tested against
every selector.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from hpscaler.model import LabelSelector, Node, Pod, TopologySpread

SpreadKey = tuple[str, LabelSelector, str]
"""A spread's topology key, its selector and the namespace it counts in."""
LabelKey = tuple[str, str, str]
"""A label, its value and a namespace."""


def matching(pods: Sequence[Pod], selector: LabelSelector, namespace: str) -> int:
    """How many of `pods` in `namespace` the selector selects (a one-label selector without `matches`)."""
    if len(selector.match_labels) == 1 and not selector.match_expressions:
        ((key, value),) = selector.match_labels
        return sum(1 for p in pods if p.labels.get(key) == value and p.namespace == namespace)
    return sum(1 for p in pods if p.namespace == namespace and selector.matches(p.labels))


def _one_label(selector: LabelSelector) -> tuple[str, str] | None:
    if len(selector.match_labels) == 1 and not selector.match_expressions:
        return selector.match_labels[0]
    return None


class SpreadCounts:
    """Matching pods per domain, per spread read so far, over the nodes that stay."""

    def __init__(
        self, nodes: Sequence[Node], pods: Sequence[Sequence[Pod]], alive: npt.NDArray[np.bool_]
    ) -> None:
        """`pods` and `alive` are the room's: its pods per node and which nodes stay (read live)."""
        self.nodes = nodes
        self.pods = pods
        self.alive = alive
        self.spreads: dict[SpreadKey, dict[str, int]] = {}
        # Per topology key: (label, value, namespace) -> pods per domain.
        self.censuses: dict[str, dict[LabelKey, dict[str, int]]] = {}
        # What `add` keeps current: the censuses' counts by label, the other selectors' one by one.
        self.by_label: dict[LabelKey, list[tuple[str, dict[str, int]]]] = {}
        self.by_selector: list[tuple[SpreadKey, dict[str, int]]] = []

    def counts(self, spread: TopologySpread, namespace: str) -> dict[str, int]:
        """Pods the spread's selector selects in `namespace`, per domain (kept current by `add`)."""
        key = (spread.topology_key, spread.selector, namespace)
        counts = self.spreads.get(key)
        if counts is not None:
            return counts
        label = _one_label(spread.selector)
        if label is not None:
            census = self._census(spread.topology_key)
            counts = census.get((*label, namespace))
            if counts is None:
                counts = self._register(census, spread.topology_key, (*label, namespace))
        else:
            counts = {}
            self.by_selector.append((key, counts))
            for i in np.flatnonzero(self.alive).tolist():
                domain = self.nodes[i].labels.get(spread.topology_key)
                if domain is not None:
                    matched = matching(self.pods[i], spread.selector, namespace)
                    if matched:
                        counts[domain] = counts.get(domain, 0) + matched
        self.spreads[key] = counts
        return counts

    def add(self, row: int, pods: Sequence[Pod], sign: int) -> None:
        """Add (sign 1) or take away (-1) `pods` on node `row` in every count kept so far."""
        labels = self.nodes[row].labels
        if self.by_label:
            for pod in pods:
                for label, value in pod.labels.items():
                    for key, counts in self.by_label.get((label, value, pod.namespace), ()):
                        domain = labels.get(key)
                        if domain is not None:
                            counts[domain] = counts.get(domain, 0) + sign
        for (key, selector, namespace), counts in self.by_selector:
            domain = labels.get(key)
            if domain is None:
                continue
            matched = matching(pods, selector, namespace)
            if matched:
                counts[domain] = counts.get(domain, 0) + sign * matched

    def _census(self, topology_key: str) -> dict[LabelKey, dict[str, int]]:
        """Per (label, value, namespace): the pods that carry it per `topology_key` domain. One pass
        over the nodes that stay serves every one-label selector over that key."""
        census = self.censuses.get(topology_key)
        if census is None:
            census = self.censuses[topology_key] = {}
            for i in np.flatnonzero(self.alive).tolist():
                domain = self.nodes[i].labels.get(topology_key)
                if domain is None:
                    continue
                for pod in self.pods[i]:
                    for label, value in pod.labels.items():
                        key = (label, value, pod.namespace)
                        counts = census.get(key)
                        if counts is None:
                            counts = self._register(census, topology_key, key)
                        counts[domain] = counts.get(domain, 0) + 1
        return census

    def _register(
        self, census: dict[LabelKey, dict[str, int]], topology_key: str, key: LabelKey
    ) -> dict[str, int]:
        counts = census[key] = {}
        self.by_label.setdefault(key, []).append((topology_key, counts))
        return counts


class Tally:
    """Pods tallied by label once, for counting what many one-label selectors select among them."""

    def __init__(self, pods: Sequence[Pod]) -> None:
        self.pods = pods
        self.tally: dict[LabelKey, int] = {}
        for pod in pods:
            for label, value in pod.labels.items():
                key = (label, value, pod.namespace)
                self.tally[key] = self.tally.get(key, 0) + 1

    def matching(self, selector: LabelSelector, namespace: str) -> int:
        """How many of the pods in `namespace` the selector selects."""
        label = _one_label(selector)
        if label is not None:
            return self.tally.get((*label, namespace), 0)
        return matching(self.pods, selector, namespace)
