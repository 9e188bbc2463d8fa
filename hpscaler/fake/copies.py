"""Copies of pods and nodes that share no mutable state: what a fake API hands out and stores."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from hpscaler.model import Node, Pod


def copy_pod(pod: Pod) -> Pod:
    """A copy sharing no mutable state (the tuples inside are immutable)."""
    return replace(
        pod,
        requests=dict(pod.requests),
        labels=dict(pod.labels),
        annotations=dict(pod.annotations),
        node_selector=dict(pod.node_selector),
    )


def copy_node(node: Node, pods: Iterable[Pod] = ()) -> Node:
    """A copy sharing no mutable state, with `pods` (copied) as its bound pods."""
    return replace(
        node,
        labels=dict(node.labels),
        allocatable=dict(node.allocatable),
        annotations=dict(node.annotations),
        pods=[copy_pod(p) for p in pods],
    )
