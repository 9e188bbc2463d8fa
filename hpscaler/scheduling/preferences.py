"""Preferences tried as requirements first, then relaxed one at a time: Karpenter's preferential fallback.

Karpenter (`pkg/controllers/provisioning/scheduling/preferences.go`) schedules a pod with its
preferences as if they were required, and when the pod does not fit, relaxes one of them and tries
again, in this order:

1. preferred pod affinity terms (all are required at first),
2. preferred pod anti-affinity terms (likewise),
3. preferred node affinity (only one term is required at a time, the heaviest; relaxing moves to the
   next lighter one, then to none),
4. `ScheduleAnyway` topology spreads (required as `DoNotSchedule` at first),
5. PreferNoSchedule taints (not tolerated at first, when any NodePool or node has one).

Pod (anti-)affinity terms are dropped lightest weight first, so the strongest preferences hold longest.
A pod's relaxation state is a `Relaxation`; `harden` turns the pod and its state into the pod the
scheduler places, and `relax` gives the next state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from hpscaler.model import Pod, PodAffinityTerm, Requirement, Taint, TopologySpread


@dataclass(frozen=True, slots=True)
class Relaxation:
    """How far a pod's preferences have been relaxed."""

    pod_affinity: int = 0  # preferred pod affinity terms dropped, lightest first
    pod_anti_affinity: int = 0  # likewise for anti-affinity
    node_affinity: int = 0  # preferred node terms passed over, heaviest first
    spreads: int = 0  # ScheduleAnyway spreads dropped, in order
    prefer_no_schedule: bool = False  # PreferNoSchedule taints tolerated


def _by_weight(terms: Iterable[tuple[int, PodAffinityTerm]]) -> list[PodAffinityTerm]:
    """Terms heaviest first (stable: equal weights keep their order)."""
    return [term for _, term in sorted(terms, key=lambda wt: -wt[0])]


def _node_preferences(pod: Pod) -> list[tuple[Requirement, ...]]:
    return [term for _, term in sorted(pod.preferred_node_affinity, key=lambda wt: -wt[0])]


def _anyway(pod: Pod) -> list[TopologySpread]:
    return [s for s in pod.topology_spread if s.when_unsatisfiable == "ScheduleAnyway"]


def avoids_prefer_no_schedule(taints: Iterable[Taint]) -> bool:
    """Whether PreferNoSchedule taints are worth a first try without them (any taint has that effect)."""
    return any(t.effect == "PreferNoSchedule" for t in taints)


def has_preferences(pod: Pod, prefer_no_schedule: bool) -> bool:
    """Whether `pod` has anything to try as a requirement first."""
    return bool(
        pod.preferred_pod_affinity
        or pod.preferred_pod_anti_affinity
        or pod.preferred_node_affinity
        or _anyway(pod)
        or (prefer_no_schedule and not pod.avoids_prefer_no_schedule)
    )


def harden(pod: Pod, state: Relaxation, prefer_no_schedule: bool) -> Pod:
    """`pod` with the preferences `state` keeps made requirements."""
    affinity = _by_weight(pod.preferred_pod_affinity)
    anti = _by_weight(pod.preferred_pod_anti_affinity)
    node_terms = _node_preferences(pod)
    node_affinity = pod.node_affinity
    if state.node_affinity < len(node_terms):
        preferred = node_terms[state.node_affinity]
        node_affinity = tuple((*term, *preferred) for term in pod.node_affinity) or (preferred,)
    anyway = _anyway(pod)
    kept = anyway[state.spreads :]
    spreads = tuple(
        replace(s, when_unsatisfiable="DoNotSchedule") if s in kept else s
        for s in pod.topology_spread
        if s.when_unsatisfiable == "DoNotSchedule" or s in kept
    )
    return replace(
        pod,
        node_affinity=node_affinity,
        pod_affinity=(*pod.pod_affinity, *affinity[: len(affinity) - state.pod_affinity]),
        pod_anti_affinity=(*pod.pod_anti_affinity, *anti[: len(anti) - state.pod_anti_affinity]),
        topology_spread=spreads,
        preferred_node_affinity=(),
        preferred_pod_affinity=(),
        # Kept to tell the terms apart: a preferred anti-affinity binds its own pod only, it repels no
        # other pod (Karpenter's inverse anti-affinity tracks required terms alone).
        preferred_pod_anti_affinity=tuple(
            (w, t)
            for w, t in pod.preferred_pod_anti_affinity
            if t in anti[: len(anti) - state.pod_anti_affinity]
        ),
        avoids_prefer_no_schedule=prefer_no_schedule and not state.prefer_no_schedule,
    )


def relax(pod: Pod, state: Relaxation, prefer_no_schedule: bool) -> Relaxation | None:
    """The next relaxation of `pod`'s preferences after `state` (None: nothing is left to relax)."""
    if state.pod_affinity < len(pod.preferred_pod_affinity):
        return replace(state, pod_affinity=state.pod_affinity + 1)
    if state.pod_anti_affinity < len(pod.preferred_pod_anti_affinity):
        return replace(state, pod_anti_affinity=state.pod_anti_affinity + 1)
    if state.node_affinity < len(pod.preferred_node_affinity):
        return replace(state, node_affinity=state.node_affinity + 1)
    if state.spreads < len(_anyway(pod)):
        return replace(state, spreads=state.spreads + 1)
    if prefer_no_schedule and not state.prefer_no_schedule:
        return replace(state, prefer_no_schedule=True)
    return None
