"""The in-memory HyperPod's node state machine in continuous provisioning mode.

Continuous provisioning: a node added to a group launches in the background, and a launch that
finds no capacity fails and is retried until it succeeds or the node is deleted. Node states follow
ClusterInstanceStatus as the continuous-provisioning page defines them
(/work/shared/seed-examples/hyperpod-continuous-provisioning.txt): Pending "is being provisioned or
rebooted", ShuttingDown "will either transition to Failure status if termination encounters issues,
or will be successfully removed", SystemUpdating during AMI patching, DeepHealthCheckInProgress for
"a few mins to several hours".

Cluster events follow the "SageMaker HyperPod cluster events reference": ResourceType Instance,
EventLevel Info|Warn|Error (never "Warning"), a Description and, for a failed creation, the
metadata's FailureMessage. A failed launch uses the reference's own example ("Instance creation in
Cluster C and InstanceGroup G failed", FailureMessage "We currently do not have sufficient
capacity ..."). The reference shows no record for a Spot termination; the fake reports one at Warn
in the same style, and a deletion hpscaler asked for reports none that looks like a loss.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from hpscaler.backends.types import ClusterEvent, HyperPodNode, NodeStatus
from hpscaler.clock import Clock
from hpscaler.fake.capacity import OfferingCapacity
from hpscaler.fake.metering import Meter, MeterRecord
from hpscaler.fake.specs import InstanceSpecLike
from hpscaler.fake.timers import Timers
from hpscaler.model import CapacityType, InstanceGroup

INSUFFICIENT_CAPACITY = "InsufficientInstanceCapacity"


@dataclass(frozen=True, slots=True)
class LaunchTiming:
    """How long each step of a node's life takes, in seconds."""

    launch: float = 90.0  # from the request until the instance runs
    capacity_error: float = 10.0  # until EC2 says there is no capacity
    retry: float = 60.0  # until a failed launch is tried again
    shutdown: float = 30.0  # from a delete until the node is gone


@dataclass(slots=True)
class ClusterNode:
    """One node of the cluster as HyperPod tracks it, from the request until it is gone."""

    logical_id: str
    group: str
    capacity_type: CapacityType
    instance_types: tuple[str, ...]  # allowed, in preference order
    zones: tuple[str, ...]
    status: NodeStatus = NodeStatus.PENDING
    instance_id: str = ""
    instance_type: str = ""
    zone: str = ""
    launch_time: float = 0.0
    message: str = ""
    attempt: int = 0  # stale timers compare it and do nothing
    meter: MeterRecord | None = None
    interrupted: bool = False
    reserved: tuple[str, str] | None = None  # (type, zone) the capacity check found room in

    def view(self) -> HyperPodNode:
        """The node as ListClusterNodes shows it."""
        return HyperPodNode(
            self.logical_id,
            self.group,
            self.status,
            self.instance_id,
            self.instance_type,
            self.zone,
            self.capacity_type,
            self.launch_time,
            self.message,
        )


class NodeLifecycle:
    """Launches, capacity failures and retries, shutdowns and terminations, with their events.

    `on_running(node)` runs when an instance comes up, `on_terminated(instance id)` when EC2
    terminates one HyperPod did not delete, `on_gone(node, reason)` when a node is removed.
    """

    def __init__(
        self,
        cluster_name: str,
        clock: Clock,
        timers: Timers,
        groups: Mapping[str, InstanceGroup],
        specs: Mapping[str, InstanceSpecLike],
        capacity: OfferingCapacity,
        *,
        timing: LaunchTiming,
        seed: int = 0,
    ) -> None:
        self.cluster_name = cluster_name
        self.clock = clock
        self.timers = timers
        self.timing = timing
        self.capacity = capacity
        self.meter = Meter()
        self.nodes: dict[str, ClusterNode] = {}  # in creation order
        self.targets: dict[str, int] = {g: 0 for g in groups}
        self.events: list[ClusterEvent] = []
        self.launched: Counter[tuple[str, CapacityType]] = Counter()
        self.termination_failures: set[str] = set()  # logical ids whose shutdown ends in Failure
        self.on_running: list[Callable[[HyperPodNode], None]] = []
        self.on_terminated: list[Callable[[str], None]] = []
        self.on_gone: list[Callable[[HyperPodNode, str], None]] = []
        self._groups = groups
        self._specs = specs
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._event_ids = itertools.count(1)

    def add(self, group: InstanceGroup, count: int, types: Sequence[str], zones: Sequence[str]) -> list[str]:
        """Raise the group's target by `count` and start launching that many nodes."""
        ids: list[str] = []
        for _ in range(count):
            logical_id = f"{group.name}-{next(self._ids)}"
            node = ClusterNode(logical_id, group.name, group.capacity_type, tuple(types), tuple(zones))
            self.nodes[logical_id] = node
            self._schedule_launch(node, self.timing.launch)
            ids.append(logical_id)
        self.targets[group.name] += count
        return ids

    def set_status(self, logical_id: str, status: NodeStatus, message: str = "") -> None:
        """A status HyperPod sets on its own; launch timers of the previous status do nothing."""
        node = self.nodes[logical_id]
        node.status, node.message = status, message
        node.attempt += 1

    def shut_down(self, node: ClusterNode) -> None:
        """BatchDeleteClusterNodes: ShuttingDown at once (billing stops, target drops), gone later."""
        if node.status == NodeStatus.SHUTTING_DOWN:
            return
        node.status, node.message = NodeStatus.SHUTTING_DOWN, ""
        node.attempt += 1
        self.targets[node.group] -= 1
        self._stop_billing(node, "deleted")
        self.timers.call_later(self.timing.shutdown, partial(self._finish, node.logical_id, "deleted"))

    def terminate(self, logical_id: str, reason: str) -> None:
        """EC2 terminates the instance (a Spot reclaim): the node is gone at once."""
        node = self.nodes.get(logical_id)
        if node is None:
            return
        if node.status != NodeStatus.SHUTTING_DOWN:
            self.targets[node.group] -= 1
        self._stop_billing(node, reason)
        self.event(
            node.group,
            node.instance_id,
            "Warn",
            f"Instance {node.instance_id} in Cluster {self.cluster_name} and InstanceGroup {node.group} "
            f"was terminated ({reason})",
        )
        if node.instance_id:
            for callback in self.on_terminated:
                callback(node.instance_id)
        self._finish(logical_id, reason)

    def by_instance(self, instance_id: str) -> ClusterNode | None:
        """The live node an instance backs."""
        return next((n for n in self.nodes.values() if instance_id and n.instance_id == instance_id), None)

    def status(self, logical_id: str) -> NodeStatus:
        """The node's status now; NotFound once it is gone."""
        node = self.nodes.get(logical_id)
        return node.status if node else NodeStatus.NOT_FOUND

    def has_room(self, instance_type: str, zone: str, node: ClusterNode) -> bool:
        """Whether a launch of `node` would find capacity in this type and zone now."""
        return self.capacity.has_room(
            instance_type, zone, node, self._groups[node.group], self.nodes.values()
        )

    def event(
        self, group: str, instance_id: str, level: str, description: str, *, failure_message: str = ""
    ) -> None:
        """Record a cluster event (ListClusterEvents)."""
        event_id = f"evt-{next(self._event_ids):06d}"
        self.events.append(
            ClusterEvent(
                event_id,
                self.clock.now(),
                group,
                instance_id,
                level,
                description,
                resource_type="Instance",
                failure_message=failure_message,
            )
        )

    # --- the state machine ----------------------------------------------------------------------

    def _schedule_launch(self, node: ClusterNode, delay: float) -> None:
        node.attempt += 1
        # EC2 answers "insufficient capacity" within seconds; only a launch that gets capacity
        # takes the full launch time. So the capacity verdict comes early, the node later.
        check = min(delay, self.timing.capacity_error)
        self.timers.call_later(
            check, partial(self._check_capacity, node.logical_id, node.attempt, delay - check)
        )

    def _check_capacity(self, logical_id: str, attempt: int, rest: float) -> None:
        node = self.nodes.get(logical_id)
        if node is None or node.attempt != attempt or node.status != NodeStatus.PENDING:
            return
        room = next(
            ((t, z) for t in node.instance_types for z in node.zones if self.has_room(t, z, node)), None
        )
        if room is not None:
            # EC2 answers a launch at once (RunInstances fails with InsufficientInstanceCapacity, or
            # the instance is pending): a launch that got capacity holds it while it boots, so the
            # launches of one request beyond the room fail early, not when the others come up.
            node.reserved = room
            self.timers.call_later(rest, partial(self._launch, logical_id, attempt))
        else:
            self._fail_launch(node)

    def _fail_launch(self, node: ClusterNode) -> None:
        node.status, node.message = NodeStatus.FAILURE, INSUFFICIENT_CAPACITY
        kinds = "/".join(node.instance_types)
        self.event(
            node.group,
            "",
            "Error",
            f"Instance creation in Cluster {self.cluster_name} and InstanceGroup {node.group} failed",
            failure_message=f"We currently do not have sufficient capacity to launch new {kinds} "
            f"instances ({INSUFFICIENT_CAPACITY} in {'/'.join(node.zones)}). Please try again.",
        )
        node.attempt += 1
        self.timers.call_later(self.timing.retry, partial(self._retry, node.logical_id, node.attempt))

    def _launch(self, logical_id: str, attempt: int) -> None:
        node = self.nodes.get(logical_id)
        if node is None or node.attempt != attempt or node.status != NodeStatus.PENDING:
            return
        now = self.clock.now()
        offering = next(
            ((t, z) for t in node.instance_types for z in node.zones if self.has_room(t, z, node)), None
        )
        if offering is None:
            self._fail_launch(node)
            return
        node.instance_type, node.zone = offering
        node.instance_id = f"i-{self._rng.getrandbits(68):017x}"
        node.status, node.message, node.launch_time = NodeStatus.RUNNING, "", now
        spec = self._specs[node.instance_type]
        node.meter = self.meter.start(
            MeterRecord(
                logical_id,
                node.instance_id,
                node.group,
                node.instance_type,
                node.zone,
                node.capacity_type,
                spec.price(node.capacity_type),
                spec.price(CapacityType.ON_DEMAND),
                now,
            )
        )
        self.launched[(node.group, node.capacity_type)] += 1
        self.event(node.group, node.instance_id, "Info", f"Node {logical_id} is Running in {node.zone}")
        for callback in self.on_running:
            callback(node.view())

    def _retry(self, logical_id: str, attempt: int) -> None:
        node = self.nodes.get(logical_id)
        if node is not None and node.attempt == attempt and node.status == NodeStatus.FAILURE:
            node.status = NodeStatus.PENDING
            self._schedule_launch(node, self.timing.launch)

    def _finish(self, logical_id: str, reason: str) -> None:
        failing = self.nodes.get(logical_id)
        if failing is not None and logical_id in self.termination_failures:
            self.termination_failures.discard(logical_id)
            failing.status, failing.message = NodeStatus.FAILURE, "termination failed"
            self.targets[failing.group] += 1  # still a node of the group; deleting it again counts
            return
        node = self.nodes.pop(logical_id, None)
        if node is None:
            return
        view = node.view()
        for callback in self.on_gone:
            callback(view, reason)

    def _stop_billing(self, node: ClusterNode, reason: str) -> None:
        if node.meter is not None:
            node.meter.stop(self.clock.now(), reason)
