"""ProvisioningRequests (`autoscaling.x-k8s.io/v1`): which request gets capacity, and what its status says.

Kueue's ProvisioningRequest admission check creates one request per workload, with PodTemplates for
its pod sets, and admits the workload once the request is `Provisioned`. The semantics follow
Cluster Autoscaler's (`cluster-autoscaler/provisioningrequest/{checkcapacity,besteffortatomic,
conditions}` and `processors/provreq`), with the reasons it writes:

* `check-capacity.autoscaling.x-k8s.io`: do all the pods fit on the nodes that exist or are on their
  way, now? Nothing is provisioned. Yes: `Provisioned=True` (`CapacityIsFound`). No:
  `Provisioned=False` (`CapacityIsNotFound`, tried again later), or `Failed=True` with the
  `noRetry: "true"` parameter.
* `best-effort-atomic-scale-up.autoscaling.x-k8s.io`: nodes for all the pods at once, within the
  NodePools' limits and (the pods being one gang) in one zone, or none. `Provisioned=True`
  (`CapacityIsProvisioned`, or `CapacityIsFound` when no node was needed) once the nodes are asked
  for; `Provisioned=False` (`CapacityIsNotFound`) with the scheduler's reason otherwise.
* Every request handled is `Accepted=True`. A pod set whose PodTemplate is missing makes the request
  `Failed=True` (`FailedToCreatePods`), as does a request never provisioned for 7 days, or within its
  `ValidUntilSeconds` parameter (best-effort-atomic) (`Expired`).
* A provisioned request books its capacity: its pods (less those of its consumers that already
  exist) are held on the nodes, so other pods, and consolidation, leave the room alone. The booking
  ends with `BookingExpired=True` 10 minutes after `Provisioned` (`CapacityReservationTimeExpired`),
  and with `CapacityRevoked=True` (`CapacityLost`) when the nodes holding it go away first.

Everything here is pure; the scheduler's gang placement (one zone, all-or-nothing) does the fitting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from hpscaler.model import ANNOTATION_DO_NOT_DISRUPT, Gang, Node, Pod
from hpscaler.scheduling.types import InFlightNode, Plan, SchedulingInput

CHECK_CAPACITY = "check-capacity.autoscaling.x-k8s.io"
BEST_EFFORT_ATOMIC = "best-effort-atomic-scale-up.autoscaling.x-k8s.io"
SUPPORTED_CLASSES = (CHECK_CAPACITY, BEST_EFFORT_ATOMIC)
CONSUME_ANNOTATION = "autoscaling.x-k8s.io/consume-provisioning-request"
CLASS_ANNOTATION = "autoscaling.x-k8s.io/provisioning-class-name"

# Condition types (the API's constants).
ACCEPTED = "Accepted"
PROVISIONED = "Provisioned"
FAILED = "Failed"
CAPACITY_REVOKED = "CapacityRevoked"
BOOKING_EXPIRED = "BookingExpired"

# Reasons (Cluster Autoscaler's conditions package), and CapacityLost of our own.
REASON_ACCEPTED = "Accepted"
CAPACITY_IS_FOUND = "CapacityIsFound"
CAPACITY_IS_NOT_FOUND = "CapacityIsNotFound"
CAPACITY_IS_PROVISIONED = "CapacityIsProvisioned"
FAILED_TO_CREATE_PODS = "FailedToCreatePods"
RESERVATION_EXPIRED = "CapacityReservationTimeExpired"
EXPIRED = "Expired"
CAPACITY_LOST = "CapacityLost"
BEING_PROVISIONED = "CapacityIsBeingProvisioned"  # ours: nodes asked for, not all joined yet

BOOKING_SECONDS = 600.0  # Cluster Autoscaler's defaultReservationTime
EXPIRY_SECONDS = 7 * 24 * 3600.0  # its defaultExpirationTime
NO_RETRY = "noRetry"
VALID_UNTIL = "ValidUntilSeconds"  # best-effort-atomic: stop trying this long after creation
_NO_PROVISIONING = "no provisioning for a capacity check"


@dataclass(frozen=True, slots=True)
class RequestCondition:
    """One status condition; `since` is its lastTransitionTime (epoch seconds)."""

    type: str
    status: str  # "True" | "False"
    reason: str
    message: str
    since: float = 0.0


@dataclass(frozen=True, slots=True)
class PodSet:
    """`count` pods like the PodTemplate `template` (same namespace)."""

    template: str
    count: int


@dataclass(frozen=True, slots=True)
class ProvisioningRequest:
    """The parts of a ProvisioningRequest the decisions read."""

    namespace: str
    name: str
    class_name: str
    pod_sets: tuple[PodSet, ...]
    parameters: Mapping[str, str] = field(default_factory=dict)
    created: float = 0.0
    uid: str = ""
    conditions: tuple[RequestCondition, ...] = ()

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"

    @property
    def pod_count(self) -> int:
        """How many pods the request is for."""
        return sum(s.count for s in self.pod_sets)

    def condition(self, kind: str) -> RequestCondition | None:
        """The condition of type `kind`, if set."""
        return next((c for c in self.conditions if c.type == kind), None)

    def is_true(self, kind: str) -> bool:
        """Whether the condition `kind` is set and True."""
        found = self.condition(kind)
        return found is not None and found.status == "True"

    @property
    def finished(self) -> bool:
        """Failed, expired or revoked: nothing more to do for it."""
        return any(self.is_true(k) for k in (FAILED, BOOKING_EXPIRED, CAPACITY_REVOKED))

    @property
    def launching(self) -> bool:
        """Nodes were asked for all its pods and have not all joined yet."""
        found = self.condition(PROVISIONED)
        return (
            found is not None
            and found.status == "False"
            and found.reason == BEING_PROVISIONED
            and not self.finished
        )

    @property
    def booked(self) -> bool:
        """Provisioned and not finished: its capacity is held for its pods."""
        return self.is_true(PROVISIONED) and not self.finished


@dataclass(frozen=True, slots=True)
class StatusChange:
    """Conditions to merge into a request's status (other types are kept)."""

    request: str  # namespace/name
    conditions: tuple[RequestCondition, ...]

    def get(self, kind: str) -> RequestCondition | None:
        """The change's condition of type `kind`, if any."""
        return next((c for c in self.conditions if c.type == kind), None)


class TemplateError(ValueError):
    """A pod set names a PodTemplate that does not exist (or is unusable)."""


def queue_order(requests: Iterable[ProvisioningRequest]) -> list[ProvisioningRequest]:
    """Supported requests, oldest first (the order Kueue queued them in)."""
    return sorted(
        (r for r in requests if r.class_name in SUPPORTED_CLASSES), key=lambda r: (r.created, r.key)
    )


def request_pods(req: ProvisioningRequest, templates: Mapping[str, Pod]) -> list[Pod]:
    """The pods the request stands for, one gang; `templates` by `namespace/name`."""
    pods: list[Pod] = []
    gang = Gang(f"provisioning-request/{req.name}", req.pod_count)
    for index, pod_set in enumerate(req.pod_sets):
        template = templates.get(f"{req.namespace}/{pod_set.template}")
        if template is None:
            raise TemplateError(
                f"podSets[{index}]: PodTemplate {req.namespace}/{pod_set.template} not found; "
                "create it in the request's namespace, or recreate the request"
            )
        for i in range(pod_set.count):
            pods.append(
                dataclasses.replace(
                    template,
                    namespace=req.namespace,
                    name=f"{req.name}-provreq-{index}-{i}",
                    uid=f"{req.uid or req.key}/{index}/{i}",
                    labels=dict(template.labels),
                    annotations={**template.annotations, CONSUME_ANNOTATION: req.name},
                    node_selector=dict(template.node_selector),
                    owner_kind="ProvisioningRequest",
                    owner_name=req.name,
                    gang=gang,
                    node_name="",
                    phase="Pending",
                    created=req.created,
                )
            )
    return pods


def consumers(pods: Iterable[Pod]) -> dict[str, int]:
    """How many live pods consume each request (`namespace/name`), from their annotation."""
    counts: dict[str, int] = {}
    for pod in pods:
        name = pod.annotations.get(CONSUME_ANNOTATION)
        if name and pod.phase not in ("Succeeded", "Failed") and not pod.terminating:
            key = f"{pod.namespace}/{name}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def without_provisioning(base: SchedulingInput) -> SchedulingInput:
    """`base` with every offering closed: pods fit only on existing and in-flight nodes."""
    closed = {(g.name, z): _NO_PROVISIONING for g in base.groups for z in g.zones}
    return dataclasses.replace(base, unavailable={**base.unavailable, **closed})


def scheduling_input(
    base: SchedulingInput, pods: Sequence[Pod], nodes: Sequence[Node], inflight: Sequence[InFlightNode]
) -> SchedulingInput:
    """`base` for these pods on these nodes."""
    return dataclasses.replace(base, pods=list(pods), nodes=list(nodes), inflight=list(inflight))


def placed_keys(plan: Plan) -> set[str]:
    """Every pod the plan puts somewhere."""
    keys = {k for pods in plan.existing.values() for k in pods}
    keys.update(k for pods in plan.inflight.values() for k in pods)
    keys.update(k for node in plan.new_nodes for k in node.pods)
    return keys


def holder(pod: Pod, where: str) -> Pod:
    """A booked pod as it holds room on a node: requests only, and never moved by consolidation.

    Its labels and affinities are dropped so that the real pods' own (anti-)affinity does not mistake
    the room held for them for pods already running.
    """
    return Pod(
        namespace=pod.namespace,
        name=pod.name,
        requests=dict(pod.requests),
        uid=pod.uid,
        annotations={ANNOTATION_DO_NOT_DISRUPT: "true", CONSUME_ANNOTATION: pod.owner_name},
        owner_kind="ProvisioningRequest",
        owner_name=pod.owner_name,
        node_name=where,
        phase="Running",
        created=pod.created,
    )


@dataclass(frozen=True, slots=True)
class RequestSet:
    """What a ProvisioningRequest source holds: the requests, their PodTemplates (as the pods they
    describe, by `namespace/name`), and objects it could not read (`namespace/name` -> why)."""

    requests: tuple[ProvisioningRequest, ...] = ()
    templates: Mapping[str, Pod] = field(default_factory=dict)
    invalid: Mapping[str, str] = field(default_factory=dict)


def merge_conditions(
    current: Sequence[RequestCondition], wanted: Sequence[RequestCondition], now: float
) -> tuple[RequestCondition, ...]:
    """`current` with `wanted` replacing the same types (lastTransitionTime kept while the status
    stays), as `meta.SetStatusCondition` does; other types kept in their order."""
    by_type = {c.type: c for c in wanted}
    merged: list[RequestCondition] = []
    for old in current:
        new = by_type.pop(old.type, None)
        if new is None:
            merged.append(old)
        else:
            since = old.since if old.status == new.status else now
            merged.append(dataclasses.replace(new, since=since))
    merged.extend(dataclasses.replace(c, since=now) for c in by_type.values())
    return tuple(merged)
