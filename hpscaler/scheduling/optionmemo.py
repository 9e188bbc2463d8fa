"""Launch options remembered across rounds: they change only when the configuration does.

Karpenter's instance-type provider caches a NodeClass's instance types and offerings and recomputes
them when the NodeClass or the offerings change, not once per scheduling round. `build_options` (every
NodePool x instance group x type x zone, with its labels, taints and DaemonSet overhead) is a function
of the configuration alone, and the daemon, `plan` and the simulator call the scheduler round after
round with the same one: on 400 types in 100 groups it takes about a tenth of a 1,000-pod round.

An entry is keyed by a snapshot of the inputs, compared by value: the NodePools, NodeClasses and
instance groups (frozen dataclasses), the catalogue by identity (it is immutable), the scheduling
fields of the DaemonSet pods (`Pod` is mutable, so they are copied into the key), the placement
scores and the region. A changed input is a miss, never a stale hit. The options are shared by the
rounds that hit: the scheduler treats them as read-only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from threading import Lock

from hpscaler.catalogue import Catalogue
from hpscaler.model import InstanceGroup, NodeClass, NodePool, Pod
from hpscaler.scheduling.options import Option, build_options

SIZE = 8  # configurations remembered (the daemon uses one; `simulate` and tests a few)

_Key = tuple[object, ...]


def _daemonset_key(pod: Pod) -> tuple[object, ...]:
    """What `daemon_overhead` reads of a DaemonSet pod."""
    return (
        tuple(sorted(pod.requests.items())),
        pod.tolerations,
        tuple(sorted(pod.node_selector.items())),
        pod.node_affinity,
    )


class OptionsMemo:
    """`build_options` for the last `size` configurations, most recent first."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self.entries: list[tuple[_Key, Catalogue, list[Option]]] = []
        self.hits = 0
        self.misses = 0
        self._lock = Lock()  # `plan` may schedule from worker threads

    def options(
        self,
        node_pools: Sequence[NodePool],
        node_classes: Sequence[NodeClass],
        groups: Sequence[InstanceGroup],
        catalogue: Catalogue,
        daemonsets: Sequence[Pod],
        placement_scores: Mapping[str, float],
        region: str = "",
    ) -> list[Option]:
        """The launch options of this configuration (see `build_options`); do not modify them."""
        key: _Key = (
            tuple(node_pools),
            tuple(node_classes),
            tuple(groups),
            tuple(_daemonset_key(d) for d in daemonsets),
            tuple(sorted(placement_scores.items())),
            region,
        )
        with self._lock:
            for position, (known, known_catalogue, options) in enumerate(self.entries):
                if known_catalogue is catalogue and known == key:
                    self.hits += 1
                    if position:
                        self.entries.insert(0, self.entries.pop(position))
                    return options
            self.misses += 1
        options = build_options(
            node_pools, node_classes, groups, catalogue, daemonsets, placement_scores, region
        )
        with self._lock:
            self.entries.insert(0, (key, catalogue, options))
            del self.entries[self.size :]
        return options

    def clear(self) -> None:
        """Forget every configuration (benchmarks time a first round this way)."""
        with self._lock:
            self.entries.clear()


MEMO = OptionsMemo()
