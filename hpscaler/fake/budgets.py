"""PodDisruptionBudget arithmetic, as the disruption controller and the Eviction API do it.

From https://kubernetes.io/docs/tasks/run-application/configure-pdb/ and
https://kubernetes.io/docs/concepts/workloads/pods/disruptions/: a budget selects the pods of its
namespace that match its selector; `expected` is their number and `healthy` those running and not
being deleted; `minAvailable` (or `expected - maxUnavailable`) is the desired healthy count, with a
percentage rounded up; `disruptionsAllowed = max(0, healthy - desired)`. Pods that Succeeded or
Failed are not counted. The Eviction API refuses a pod that more than one budget selects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from hpscaler.model import LabelSelector, Pod


@dataclass(slots=True)
class DisruptionBudget:
    """A PodDisruptionBudget with exactly one of minAvailable / maxUnavailable.

    `pinned` fixes status.disruptionsAllowed (a test's stand-in for a controller that lags); the
    apiserver decrements it as it admits an eviction.
    """

    namespace: str
    name: str
    selector: LabelSelector
    min_available: int | str | None
    max_unavailable: int | str | None
    pinned: int | None = None

    def __post_init__(self) -> None:
        if (self.min_available is None) == (self.max_unavailable is None):
            raise ValueError("set exactly one of min_available and max_unavailable")

    def selects(self, pod: Pod) -> bool:
        """Whether the budget counts this pod."""
        return (
            pod.namespace == self.namespace
            and pod.phase not in ("Succeeded", "Failed")
            and self.selector.matches(pod.labels)
        )

    def disruptions_allowed(self, pods: Iterable[Pod]) -> int:
        """status.disruptionsAllowed over the cluster's `pods` (terminating ones flagged)."""
        if self.pinned is not None:
            return max(0, self.pinned)
        matching = [p for p in pods if self.selects(p)]
        expected = len(matching)
        healthy = sum(1 for p in matching if p.phase == "Running" and not p.terminating)
        if self.max_unavailable is not None:
            desired = expected - scaled(self.max_unavailable, expected)
        else:
            assert self.min_available is not None
            desired = scaled(self.min_available, expected)
        return max(0, healthy - desired)


def scaled(value: int | str, total: int) -> int:
    """An IntOrString against `total`, percentages rounded up as the disruption controller does."""
    if isinstance(value, int):
        return value
    if value.endswith("%"):
        return math.ceil(total * int(value[:-1]) / 100)
    return int(value)
