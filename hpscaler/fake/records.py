"""What the fake Kubernetes cluster records for assertions and simulator reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from hpscaler.model import Pod


class RecordedEvent(NamedTuple):
    """A Kubernetes Event the daemon emitted on a pod."""

    pod: str
    reason: str
    message: str
    warning: bool


@dataclass(frozen=True, slots=True)
class PodKill:
    """A pod that died with its node instead of being evicted gracefully."""

    key: str
    time: float
    reason: str
    terminating: bool  # it had been evicted and was still inside its grace period


@dataclass(frozen=True, slots=True)
class NodeRemoval:
    """A Node that went away, with the pods bound to it at that moment (copies)."""

    name: str
    time: float
    reason: str
    pods: tuple[Pod, ...]


@dataclass(frozen=True, slots=True)
class PodTermination:
    """A graceful end asked for through the API: an eviction or a DELETE of a pod."""

    key: str
    time: float
    node: str  # the node the pod was bound to ("" if pending)
    via: str  # "evict" or "delete"
    pod: Pod


@dataclass(slots=True)
class KubeCounters:
    """What happened in the fake cluster, for assertions and simulator reports."""

    binds: int = 0
    evictions: int = 0
    evictions_blocked: int = 0
    deletions: int = 0  # graceful deletes that bypassed PodDisruptionBudgets
    pods_killed: int = 0
    pods_recreated: int = 0
    pods_completed: int = 0
