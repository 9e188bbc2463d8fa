"""The nodes a pod can be added to, each owning `can_add` and `add` (as Karpenter's `ExistingNode` and
`NodeClaim` own `CanAdd` and `Add`): a node that exists, a node in flight, and a new node.

A target answers for itself: whether its labels and taints admit a pod's class, whether the pod fits
what it has left, and whether topology allows one more pod of the class on it. `add` changes only
the target; the round's counts (pods left, topology, NodePool usage) are `placement.Packing`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpscaler.model import LABEL_HOSTNAME, Node
from hpscaler.scheduling import topology as topo
from hpscaler.scheduling.index import RoundIndex
from hpscaler.scheduling.options import Option
from hpscaler.scheduling.packing import Bin, PodClass, Shape
from hpscaler.scheduling.types import InFlightNode


@dataclass(slots=True, eq=False)
class Target(Bin):
    """A node pods can be added to."""

    def admits(self, cls: PodClass, index: RoundIndex) -> bool:
        """Whether the node's labels and taints admit pods of `cls` (not resources, not topology)."""
        return index.compatible(cls, self.signature)

    def can_add(self, shape: Shape, index: RoundIndex) -> bool:
        """Whether the next pod of `shape` may go onto this node now."""
        if shape.remaining <= 0 or not self.fits(shape.demand) or not self.admits(shape.cls, index):
            return False
        return not shape.cls.topology.constrained or topo.allowed(shape.cls.topology, self.labels)


@dataclass(slots=True, eq=False)
class ExistingNode(Target):
    """A node of the cluster, with what its pods leave of its allocatable."""

    @classmethod
    def of(cls, node: Node, signature: int, labels: dict[str, str], index: RoundIndex) -> ExistingNode:
        """The target for `node` (of node signature `signature`, with `labels`)."""
        used = index.vector(node.used())
        cap = index.vector(node.allocatable)
        return cls(node.name, "existing", labels, np.maximum(cap - used, 0.0), cap, signature)


@dataclass(slots=True, eq=False)
class _OptionTarget(Target):
    """A node of a launch option: it admits the classes compatible with the option."""

    def admits(self, cls: PodClass, index: RoundIndex) -> bool:
        assert self.option is not None
        return self.option.index in cls.option_ids


@dataclass(slots=True, eq=False)
class InFlightTarget(_OptionTarget):
    """A node launched and not yet joined, planned as `option`, with what its pods leave."""

    @classmethod
    def of(cls, flight: InFlightNode, option: Option, index: RoundIndex) -> InFlightTarget:
        """The target for `flight`."""
        labels = {**option.labels, LABEL_HOSTNAME: flight.name}
        cap = index.option_vectors[option.index]
        used = index.vector({}, pods=0)
        for pod in flight.pods:
            used += index.vector(pod.requests, pods=1)
        return cls(flight.name, "inflight", labels, np.maximum(cap - used, 0.0), cap, option.index, option)


@dataclass(slots=True, eq=False)
class NewNode(_OptionTarget):
    """A node this round would launch, of `option`."""

    @classmethod
    def of(cls, name: str, option: Option, index: RoundIndex) -> NewNode:
        """An empty new node called `name`."""
        cap = index.option_vectors[option.index]
        return cls(
            name, "new", {**option.labels, LABEL_HOSTNAME: name}, cap.copy(), cap, option.index, option
        )
