"""Node-selector requirement algebra, as Karpenter's `scheduling.Requirements`.

A node that does not exist yet is described by a set of allowed values per label key rather than by
concrete labels: a NodePool may say `zone In [a, b]` and a pod `zone In [b]`, and the node they can
share is the one labelled `b`. A pod term fits a node template when, for every key the pod
constrains, the intersection of the two value sets is not empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from hpscaler.model import Pod, Requirement


@dataclass(frozen=True, slots=True)
class ValueSet:
    """The label values a key may take: absent, and/or present with values from a set."""

    absent_ok: bool
    present_ok: bool
    values: frozenset[str] | None = None  # None: any value when present
    excluded: frozenset[str] = frozenset()
    gt: int | None = None
    lt: int | None = None

    def intersect(self, other: ValueSet) -> ValueSet:
        """Values allowed by both sets."""
        if self.values is None:
            values = other.values
        elif other.values is None:
            values = self.values
        else:
            values = self.values & other.values
        gt = _max_opt(self.gt, other.gt)
        lt = _min_opt(self.lt, other.lt)
        return ValueSet(
            absent_ok=self.absent_ok and other.absent_ok,
            present_ok=self.present_ok and other.present_ok,
            values=values,
            excluded=self.excluded | other.excluded,
            gt=gt,
            lt=lt,
        )

    def _value_ok(self, value: str) -> bool:
        if value in self.excluded:
            return False
        if self.gt is None and self.lt is None:
            return True
        try:
            number = int(value)
        except ValueError:
            return False
        return (self.gt is None or number > self.gt) and (self.lt is None or number < self.lt)

    def is_empty(self) -> bool:
        """True when no node could satisfy this set."""
        if self.absent_ok:
            return False
        if not self.present_ok:
            return True
        if self.values is None:
            return self.gt is not None and self.lt is not None and self.lt - self.gt <= 1
        return not any(self._value_ok(v) for v in self.values)

    def pick(self) -> str | None:
        """A concrete value to label a new node with, when the set pins one down."""
        if self.values is None or not self.present_ok:
            return None
        allowed = sorted(v for v in self.values if self._value_ok(v))
        return allowed[0] if allowed else None

    def describe(self) -> str:
        """Readable form for unschedulable reasons."""
        if not self.present_ok:
            return "absent"
        parts: list[str] = []
        if self.values is not None:
            parts.append("in [" + ", ".join(sorted(self.values)) + "]")
        if self.excluded:
            parts.append("not in [" + ", ".join(sorted(self.excluded)) + "]")
        if self.gt is not None:
            parts.append(f"> {self.gt}")
        if self.lt is not None:
            parts.append(f"< {self.lt}")
        text = " and ".join(parts) if parts else "any value"
        return text + (" or absent" if self.absent_ok else "")


def _max_opt(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _min_opt(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


ANY = ValueSet(absent_ok=True, present_ok=True)
ABSENT = ValueSet(absent_ok=True, present_ok=False)


def value_set(requirement: Requirement) -> ValueSet:
    """The value set of a single requirement."""
    op = requirement.operator
    values = frozenset(requirement.values)
    if op == "In":
        return ValueSet(absent_ok=False, present_ok=True, values=values)
    if op == "NotIn":
        return ValueSet(absent_ok=True, present_ok=True, excluded=values)
    if op == "Exists":
        return ValueSet(absent_ok=False, present_ok=True)
    if op == "DoesNotExist":
        return ABSENT
    bound = int(requirement.values[0])
    if op == "Gt":
        return ValueSet(absent_ok=False, present_ok=True, gt=bound)
    return ValueSet(absent_ok=False, present_ok=True, lt=bound)


KeySets = dict[str, ValueSet]
"""Label key -> allowed values; keys not present are unconstrained (pod side) or absent (node side)."""


@lru_cache(maxsize=8192)
def exactly(value: str) -> ValueSet:
    """The set holding just `value` (shared: option templates repeat the same label values)."""
    return ValueSet(absent_ok=False, present_ok=True, values=frozenset((value,)))


def key_sets(requirements: Iterable[Requirement], labels: Mapping[str, str] | None = None) -> KeySets:
    """AND a list of requirements (and exact labels) into one value set per key."""
    return and_requirements({key: exactly(value) for key, value in (labels or {}).items()}, requirements)


def and_requirements(sets: KeySets, requirements: Iterable[Requirement]) -> KeySets:
    """AND a list of requirements into `sets`, in place; returns `sets`."""
    for req in requirements:
        sets[req.key] = sets.get(req.key, ANY).intersect(value_set(req))
    return sets


def pod_terms(pod: Pod) -> tuple[KeySets, ...]:
    """The pod's node constraints as ORed terms, each with the nodeSelector ANDed in."""
    selector = [Requirement(k, "In", (v,)) for k, v in sorted(pod.node_selector.items())]
    if not pod.node_affinity:
        return (key_sets(selector),)
    return tuple(key_sets([*selector, *term]) for term in pod.node_affinity)


def first_conflict(term: KeySets, node: KeySets) -> tuple[str, ValueSet, ValueSet] | None:
    """The first key on which a pod term and a node template cannot agree, or None if they fit."""
    for key, wanted in term.items():
        offered = node.get(key, ABSENT)
        if wanted.intersect(offered).is_empty():
            return key, wanted, offered
    return None


def term_fits_labels(term: KeySets, labels: Mapping[str, str]) -> bool:
    """Whether an existing node with concrete `labels` satisfies a pod term."""
    for key, wanted in term.items():
        value = labels.get(key)
        if value is None:
            if not wanted.absent_ok:
                return False
        elif (
            not wanted.present_ok
            or (wanted.values is not None and value not in wanted.values)
            or not wanted._value_ok(value)
        ):
            return False
    return True
