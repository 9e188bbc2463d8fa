"""An in-memory SageMaker HyperPod cluster in continuous provisioning mode, with Spot and metering.

Continuous provisioning: BatchAddClusterNodes raises the target count and returns at once; nodes
launch in the background, and a launch that finds no capacity fails and is retried until it
succeeds or the node is deleted. Billing runs per instance from launch to shutdown.

Node states follow ClusterInstanceStatus as the continuous-provisioning page defines them
(/work/shared/seed-examples/hyperpod-continuous-provisioning.txt): Pending "is being provisioned or
rebooted", ShuttingDown "will either transition to Failure status if termination encounters issues,
or will be successfully removed", SystemUpdating during AMI patching, DeepHealthCheckInProgress for
"a few mins to several hours". Tests move nodes through them with `set_node_status` and
`termination_failures`. BatchDeleteClusterNodes takes NodeLogicalIds and NodeIds "with a combined
maximum of 50 identifiers" and reports per-node failures (BatchDeleteClusterNodesError codes
NodeIdNotFound, InvalidNodeStatus, NodeIdInUse); `refuse_delete` injects one.

Cluster events follow the "SageMaker HyperPod cluster events reference": ResourceType Instance,
EventLevel Info|Warn|Error (never "Warning"), a Description and, for a failed creation, the
metadata's FailureMessage. A failed launch uses the reference's own example ("Instance creation in
Cluster C and InstanceGroup G failed", FailureMessage "We currently do not have sufficient
capacity ..."). The reference shows no record for a Spot termination; the fake reports one at Warn
in the same style, and a deletion hpscaler asked for reports none that looks like a loss.

A Spot notice reaches hpscaler only through the sources a scenario names (`notice_via`): the SQS
queue (EC2's EventBridge warning, if it reaches the account at all), the node agent (IMDS) or
HyperPod's taint, each after `notice_delay` seconds. HyperPod's own events carry no notice.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import (
    AddedNode,
    AddFailure,
    AddResult,
    ClusterDescription,
    ClusterEvent,
    DeleteFailure,
    DeleteResult,
    HyperPodNode,
    InterruptionKind,
    InterruptionMessage,
    NodeStatus,
)
from hpscaler.catalogue import Catalogue
from hpscaler.clock import Clock
from hpscaler.fake.cluster_document import ClusterSettings, describe_cluster_document
from hpscaler.fake.kubernetes import FaultInjector, Timers
from hpscaler.fake.requests import validate_add
from hpscaler.fake.signals import FakeInterruptionQueue
from hpscaler.fake.specs import InstanceSpecLike, resolve_specs
from hpscaler.model import CapacityType, InstanceGroup
from hpscaler.provisioning.batching import MAX_LOGICAL_IDS_PER_DELETE

TOKEN_TTL_SECONDS = 8 * 3600.0
INSUFFICIENT_CAPACITY = "InsufficientInstanceCapacity"
Offering = tuple[str, str, CapacityType]  # instance type, zone (name or id), capacity type


@dataclass(slots=True)
class MeterRecord:
    """Billing of one instance: from launch until it shuts down or terminates."""

    logical_id: str
    instance_id: str
    group: str
    instance_type: str
    zone: str
    capacity_type: CapacityType
    price_per_hour: float
    on_demand_price_per_hour: float
    start: float
    end: float | None = None
    end_reason: str = ""

    def seconds(self, now: float) -> float:
        """Billed seconds so far."""
        return (self.end if self.end is not None else now) - self.start


@dataclass(frozen=True, slots=True)
class Reclaim:
    """A Spot instance reclaimed: with a two-minute notice, or terminated right away."""

    time: float
    instance_id: str
    group: str
    notice: bool


@dataclass(frozen=True, slots=True)
class CapacityChange:
    """An offering's capacity set by a test or the simulator (None: unlimited)."""

    time: float
    offering: Offering
    count: int | None


@dataclass(slots=True)
class _Node:
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


@dataclass(frozen=True, slots=True)
class _TokenUse:
    time: float
    fingerprint: str
    added: tuple[tuple[str, str], ...]  # (logical id, group)
    failed: tuple[AddFailure, ...]


class FakeHyperPod:
    """In-memory `HyperPodCluster`; `run()` drives launches, retries and shutdowns."""

    def __init__(
        self,
        cluster_name: str,
        groups: Sequence[InstanceGroup],
        clock: Clock,
        *,
        capacity: Mapping[Offering, int | None] | None = None,
        specs: Mapping[str, InstanceSpecLike] | None = None,
        catalogue: Catalogue | None = None,
        interruptions: FakeInterruptionQueue | None = None,
        launch_seconds: float = 90.0,
        capacity_error_seconds: float = 10.0,
        join_seconds: float = 30.0,
        retry_seconds: float = 60.0,
        shutdown_seconds: float = 30.0,
        notice_seconds: float = 120.0,
        state_change_messages: bool = True,
        notice_via: Sequence[str] = ("sqs",),
        notice_delay: float = 0.0,
        seed: int = 0,
        timers: Timers | None = None,
    ) -> None:
        self.cluster_name = cluster_name
        self.clock = clock
        self.timers = timers if timers is not None else Timers()
        self.faults = FaultInjector()
        self.interruptions = interruptions if interruptions is not None else FakeInterruptionQueue()
        self.launch_seconds = launch_seconds
        self.capacity_error_seconds = capacity_error_seconds
        self.join_seconds = join_seconds  # used by the World to make the K8s node Ready
        self.retry_seconds = retry_seconds
        self.shutdown_seconds = shutdown_seconds
        self.notice_seconds = notice_seconds
        self.state_change_messages = state_change_messages
        self.notice_via = tuple(notice_via)
        self.silent_instances: set[str] = set()  # their termination sends no EC2 state change
        self.notice_delay = notice_delay
        # (via, instance id, deadline) for notices delivered on the node: "agent" and "taint".
        self.on_notice: list[Callable[[str, str, float], None]] = []
        self.specs = resolve_specs([t for g in groups for t in g.instance_types], specs, catalogue)
        self.calls: Counter[str] = Counter()
        self.add_bodies: list[dict[str, object]] = []
        self.delete_requests: list[tuple[str, ...]] = []
        self.launched: Counter[tuple[str, CapacityType]] = Counter()
        self.interrupted = 0  # Spot instances reclaimed, with notice or without
        self.reclaims: list[Reclaim] = []
        self.rebalances: list[tuple[float, str]] = []  # (time, instance id) of each recommendation
        self.capacity_changes: list[CapacityChange] = []
        self.on_running: list[Callable[[HyperPodNode], None]] = []
        self.on_gone: list[Callable[[HyperPodNode, str], None]] = []
        self.settings = ClusterSettings()  # NodeProvisioningMode, NodeRecovery, AutoScaling
        self.delete_refusals: dict[str, tuple[str, int]] = {}  # logical id -> (code, deletes refused)
        self.termination_failures: set[str] = set()  # logical ids whose shutdown ends in Failure
        self._groups = {g.name: g for g in groups}
        self._targets = {g.name: 0 for g in groups}
        self._capacity: dict[Offering, int | None] = dict(capacity or {})
        self._nodes: dict[str, _Node] = {}
        self._tokens: dict[str, _TokenUse] = {}
        self._events: list[ClusterEvent] = []
        self._meters: list[MeterRecord] = []
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._event_ids = itertools.count(1)
        for group in groups:
            if not group.zones:
                raise ValueError(f"instance group {group.name} needs at least one zone to launch in")
            # As CreateCluster with InstanceCount: the initial nodes launch like any other.
            self._add(group, group.target_count, group.instance_types, group.zones)

    async def run(self) -> None:
        """Launch, retry and shut down nodes as their timers fall due, until cancelled."""
        await self.timers.run()

    # --- the HyperPodCluster interface ---------------------------------------------------------

    async def describe_cluster(self) -> ClusterDescription:
        """Groups with CurrentCount (Running nodes) and TargetCount."""
        self.calls["describe_cluster"] += 1
        self.faults.check("describe_cluster")
        groups = tuple(self.groups())
        document = describe_cluster_document(self.cluster_name, groups, self.settings)
        return ClusterDescription(self.cluster_name, groups, self.settings.provisioning_mode, document)

    async def list_nodes(self) -> Sequence[HyperPodNode]:
        """Every node not yet removed, in creation order."""
        self.calls["list_nodes"] += 1
        self.faults.check("list_nodes")
        return self.nodes()

    async def list_events(self, since: float) -> Sequence[ClusterEvent]:
        """Events strictly newer than `since`."""
        self.calls["list_events"] += 1
        self.faults.check("list_events")
        return [e for e in self._events if e.time > since]

    async def batch_add_nodes(self, body: Mapping[str, object]) -> AddResult:
        """Validate, replay an idempotent token, or raise target counts and queue new nodes."""
        self.calls["batch_add_nodes"] += 1
        self.add_bodies.append(copy.deepcopy(dict(body)))
        self.faults.check("batch_add_nodes")
        entries = validate_add(body, self.cluster_name, self._groups)
        now = self.clock.now()
        token = body.get("ClientToken")
        fingerprint = json.dumps(body, sort_keys=True, default=str)
        if isinstance(token, str):
            used = self._tokens.get(token)
            if used is not None and now - used.time < TOKEN_TTL_SECONDS:
                if used.fingerprint != fingerprint:
                    raise BackendError(
                        "ClientToken reused with different parameters",
                        retryable=False,
                        code="IdempotentParameterMismatch",
                    )
                return AddResult(tuple(AddedNode(i, g, self._status(i)) for i, g in used.added), used.failed)
        added: list[tuple[str, str]] = []
        failed: list[AddFailure] = []
        for name, count, types, zones in entries:
            group = self._groups.get(name)
            if group is None:
                failed.append(AddFailure(name, "InstanceGroupNotFound", count, f"no instance group {name}"))
            elif group.status != "InService":
                failed.append(
                    AddFailure(name, "InvalidInstanceGroupStatus", count, f"group is {group.status}")
                )
            else:
                added.extend((i, name) for i in self._add(group, count, types, zones))
        if isinstance(token, str):
            self._tokens[token] = _TokenUse(now, fingerprint, tuple(added), tuple(failed))
        return AddResult(tuple(AddedNode(i, g, NodeStatus.PENDING) for i, g in added), tuple(failed))

    async def batch_delete_nodes(
        self, logical_ids: Sequence[str], instance_ids: Sequence[str] = ()
    ) -> DeleteResult:
        """ShuttingDown at once (billing stops, target drops), removed after `shutdown_seconds`.

        Like the AWS backend, it sends one request per 50 identifiers (each counted and recorded).
        """
        ids = [(i, True) for i in logical_ids] + [(i, False) for i in instance_ids]
        if not ids:
            raise BackendError(
                "NodeLogicalIds or NodeIds must hold an id", retryable=False, code="ValidationException"
            )
        deleted: list[str] = []
        failed: list[DeleteFailure] = []
        for start in range(0, len(ids), MAX_LOGICAL_IDS_PER_DELETE):
            chunk = ids[start : start + MAX_LOGICAL_IDS_PER_DELETE]
            result = self._delete_request([i for i, lid in chunk if lid], [i for i, lid in chunk if not lid])
            deleted.extend(result.deleted)
            failed.extend(result.failed)
        return DeleteResult(tuple(deleted), tuple(failed))

    def _delete_request(self, logical_ids: Sequence[str], instance_ids: Sequence[str]) -> DeleteResult:
        """One BatchDeleteClusterNodes request ("a combined maximum of 50 identifiers")."""
        self.calls["batch_delete_nodes"] += 1
        self.delete_requests.append((*logical_ids, *instance_ids))
        self.faults.check("batch_delete_nodes")
        deleted: list[str] = []
        failed: list[DeleteFailure] = []
        by_instance = {n.instance_id: n.logical_id for n in self._nodes.values() if n.instance_id}
        wanted = [(i, i) for i in logical_ids] + [(i, by_instance.get(i, "")) for i in instance_ids]
        for given, logical_id in wanted:
            node = self._nodes.get(logical_id)
            if node is None:
                failed.append(DeleteFailure(given, "NodeIdNotFound", f"node {given} not found"))
                continue
            code, times = self.delete_refusals.pop(logical_id, ("", 0))
            if times > 0:
                if times > 1:
                    self.delete_refusals[logical_id] = (code, times - 1)
                failed.append(DeleteFailure(given, code, f"node {given} cannot be deleted now"))
                continue
            deleted.append(given)
            if node.status == NodeStatus.SHUTTING_DOWN:
                continue
            node.status, node.message = NodeStatus.SHUTTING_DOWN, ""
            node.attempt += 1
            self._targets[node.group] -= 1
            self._stop_billing(node, "deleted")
            self.timers.call_later(self.shutdown_seconds, partial(self._finish, logical_id, "deleted"))
        return DeleteResult(tuple(deleted), tuple(failed))

    # --- test-, world- and simulator-facing methods --------------------------------------------

    def update_cluster(self, groups: Sequence[InstanceGroup]) -> None:
        """UpdateCluster: add instance groups, or change existing ones (status, zones, taints)."""
        self.specs.update(resolve_specs([t for g in groups for t in g.instance_types], self.specs))
        for group in groups:
            self._groups[group.name] = group
            self._targets.setdefault(group.name, 0)

    def set_node_status(self, logical_id: str, status: NodeStatus, message: str = "") -> None:
        """Move a node to a status HyperPod sets on its own (reboot, patching, deep health checks)."""
        node = self._nodes[logical_id]
        node.status, node.message = status, message
        node.attempt += 1  # launch timers of the previous status do nothing

    def refuse_delete(self, logical_id: str, code: str = "InvalidNodeStatus", times: int = 1) -> None:
        """Make the next `times` BatchDeleteClusterNodes of this node fail for it alone, with `code`."""
        self.delete_refusals[logical_id] = (code, times)

    def groups(self) -> list[InstanceGroup]:
        """Instance groups with their live current and target counts."""
        running = Counter(n.group for n in self._nodes.values() if n.status == NodeStatus.RUNNING)
        return [
            replace(g, current_count=running[g.name], target_count=self._targets[g.name])
            for g in self._groups.values()
        ]

    def group(self, name: str) -> InstanceGroup:
        """One group as configured."""
        return self._groups[name]

    def nodes(self) -> list[HyperPodNode]:
        """Every node not yet removed, in creation order (no API call counted)."""
        return [n.view() for n in self._nodes.values()]

    def node_by_instance(self, instance_id: str) -> HyperPodNode | None:
        """The node an instance backs, if it is still there."""
        node = self._by_instance(instance_id)
        return node.view() if node else None

    def events(self) -> list[ClusterEvent]:
        """All cluster events so far."""
        return list(self._events)

    def set_capacity(
        self, instance_type: str, zone: str, capacity_type: CapacityType, count: int | None
    ) -> None:
        """Limit concurrently running instances of an offering (None: unlimited)."""
        offering = (instance_type, zone, capacity_type)
        self._capacity[offering] = count
        try:
            now = self.clock.now()
        except RuntimeError:  # set-up code outside the event loop
            now = 0.0
        self.capacity_changes.append(CapacityChange(now, offering, count))

    def capacity(self, instance_type: str, zone: str, capacity_type: CapacityType) -> int | None:
        """The offering's capacity as set (None: unlimited)."""
        return self._capacity.get((instance_type, zone, capacity_type))

    def has_room(self, group: str) -> bool:
        """Whether a launch in the group would find capacity now, in some type and zone it allows."""
        config = self._groups[group]
        probe = _Node("", group, config.capacity_type, config.instance_types, config.zones)
        return any(self._has_room(t, z, probe) for t in config.instance_types for z in config.zones)

    def interrupt(self, instance_id: str, *, notice: bool = True) -> None:
        """Reclaim a Spot instance: a 2-minute notice then termination, or termination right away."""
        node = self._by_instance(instance_id)
        if node is None:
            raise ValueError(f"no live instance {instance_id}")
        if node.interrupted:
            return
        node.interrupted = True
        self.interrupted += 1
        self.reclaims.append(Reclaim(self.clock.now(), instance_id, node.group, notice))
        if not notice:
            self._terminate(node.logical_id, "spot-interruption")
            return
        deadline = self.clock.now() + self.notice_seconds
        for via in self.notice_via:
            if self.notice_delay > 0:
                self.timers.call_later(
                    self.notice_delay, partial(self._deliver_notice, via, instance_id, deadline)
                )
            else:
                self._deliver_notice(via, instance_id, deadline)
        self.timers.call_later(
            self.notice_seconds, partial(self._terminate, node.logical_id, "spot-interruption")
        )

    def _deliver_notice(self, via: str, instance_id: str, deadline: float) -> None:
        if via == "sqs":
            self.interruptions.put(
                InterruptionMessage(
                    self.interruptions.new_id(),
                    InterruptionKind.SPOT_INTERRUPTION,
                    instance_id,
                    deadline - self.notice_seconds,
                    deadline=deadline,
                    source="sqs",
                )
            )
        for callback in self.on_notice:
            callback(via, instance_id, deadline)

    def rebalance(self, instance_id: str) -> None:
        """A rebalance recommendation: a message only, the instance stays."""
        self.rebalances.append((self.clock.now(), instance_id))
        self.interruptions.put(
            InterruptionMessage(
                self.interruptions.new_id(), InterruptionKind.REBALANCE, instance_id, self.clock.now()
            )
        )

    def meter_records(self) -> list[MeterRecord]:
        """Copies of every instance's billing record, in launch order."""
        return [replace(m) for m in self._meters]

    def cost(self) -> float:
        """USD billed so far at each instance's own price."""
        now = self.clock.now()
        return sum(m.seconds(now) * m.price_per_hour for m in self._meters) / 3600.0

    def on_demand_equivalent_cost(self) -> float:
        """What the same instance-seconds would have cost On-Demand."""
        now = self.clock.now()
        return sum(m.seconds(now) * m.on_demand_price_per_hour for m in self._meters) / 3600.0

    # --- internals -----------------------------------------------------------------------------

    def _add(self, group: InstanceGroup, count: int, types: Sequence[str], zones: Sequence[str]) -> list[str]:
        ids: list[str] = []
        for _ in range(count):
            logical_id = f"{group.name}-{next(self._ids)}"
            node = _Node(logical_id, group.name, group.capacity_type, tuple(types), tuple(zones))
            self._nodes[logical_id] = node
            self._schedule_launch(node, self.launch_seconds)
            ids.append(logical_id)
        self._targets[group.name] += count
        return ids

    def _schedule_launch(self, node: _Node, delay: float) -> None:
        node.attempt += 1
        # EC2 answers "insufficient capacity" within seconds; only a launch that gets capacity
        # takes the full launch time. So the capacity verdict comes early, the node later.
        check = min(delay, self.capacity_error_seconds)
        self.timers.call_later(
            check, partial(self._check_capacity, node.logical_id, node.attempt, delay - check)
        )

    def _check_capacity(self, logical_id: str, attempt: int, rest: float) -> None:
        node = self._nodes.get(logical_id)
        if node is None or node.attempt != attempt or node.status != NodeStatus.PENDING:
            return
        room = next(
            ((t, z) for t in node.instance_types for z in node.zones if self._has_room(t, z, node)), None
        )
        if room is not None:
            # EC2 answers a launch at once (RunInstances fails with InsufficientInstanceCapacity, or
            # the instance is pending): a launch that got capacity holds it while it boots, so the
            # launches of one request beyond the room fail early, not when the others come up.
            node.reserved = room
            self.timers.call_later(rest, partial(self._launch, logical_id, attempt))
        else:
            self._fail_launch(node)

    def _fail_launch(self, node: _Node) -> None:
        node.status, node.message = NodeStatus.FAILURE, INSUFFICIENT_CAPACITY
        kinds = "/".join(node.instance_types)
        self._event(
            node.group,
            "",
            "Error",
            f"Instance creation in Cluster {self.cluster_name} and InstanceGroup {node.group} failed",
            failure_message=f"We currently do not have sufficient capacity to launch new {kinds} "
            f"instances ({INSUFFICIENT_CAPACITY} in {'/'.join(node.zones)}). Please try again.",
        )
        node.attempt += 1
        self.timers.call_later(self.retry_seconds, partial(self._retry, node.logical_id, node.attempt))

    def _launch(self, logical_id: str, attempt: int) -> None:
        node = self._nodes.get(logical_id)
        if node is None or node.attempt != attempt or node.status != NodeStatus.PENDING:
            return
        now = self.clock.now()
        offering = next(
            ((t, z) for t in node.instance_types for z in node.zones if self._has_room(t, z, node)), None
        )
        if offering is None:
            self._fail_launch(node)
            return
        node.instance_type, node.zone = offering
        node.instance_id = self._new_instance_id()
        node.status, node.message, node.launch_time = NodeStatus.RUNNING, "", now
        spec = self.specs[node.instance_type]
        node.meter = MeterRecord(
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
        self._meters.append(node.meter)
        self.launched[(node.group, node.capacity_type)] += 1
        self._event(node.group, node.instance_id, "Info", f"Node {logical_id} is Running in {node.zone}")
        for callback in self.on_running:
            callback(node.view())

    def _retry(self, logical_id: str, attempt: int) -> None:
        node = self._nodes.get(logical_id)
        if node is not None and node.attempt == attempt and node.status == NodeStatus.FAILURE:
            node.status = NodeStatus.PENDING
            self._schedule_launch(node, self.launch_seconds)

    def _terminate(self, logical_id: str, reason: str) -> None:
        node = self._nodes.get(logical_id)
        if node is None:
            return
        if node.status != NodeStatus.SHUTTING_DOWN:
            self._targets[node.group] -= 1
        self._stop_billing(node, reason)
        self._event(
            node.group,
            node.instance_id,
            "Warn",
            f"Instance {node.instance_id} in Cluster {self.cluster_name} and InstanceGroup {node.group} "
            f"was terminated ({reason})",
        )
        if self.state_change_messages and node.instance_id and node.instance_id not in self.silent_instances:
            self.interruptions.put(
                InterruptionMessage(
                    self.interruptions.new_id(),
                    InterruptionKind.STATE_CHANGE,
                    node.instance_id,
                    self.clock.now(),
                    state="terminated",
                )
            )
        self._finish(logical_id, reason)

    def _finish(self, logical_id: str, reason: str) -> None:
        failing = self._nodes.get(logical_id)
        if failing is not None and logical_id in self.termination_failures:
            self.termination_failures.discard(logical_id)
            failing.status, failing.message = NodeStatus.FAILURE, "termination failed"
            self._targets[failing.group] += 1  # still a node of the group; deleting it again counts
            return
        node = self._nodes.pop(logical_id, None)
        if node is None:
            return
        view = node.view()
        for callback in self.on_gone:
            callback(view, reason)

    def _stop_billing(self, node: _Node, reason: str) -> None:
        if node.meter is not None and node.meter.end is None:
            node.meter.end, node.meter.end_reason = self.clock.now(), reason

    def _has_room(self, instance_type: str, zone: str, node: _Node) -> bool:
        group = self._groups[node.group]
        keys = [(instance_type, zone, node.capacity_type)]
        if zone in group.zones and len(group.zone_ids) == len(group.zones):
            keys.append((instance_type, group.zone_ids[group.zones.index(zone)], node.capacity_type))
        limit = next((self._capacity[k] for k in keys if k in self._capacity), None)
        if limit is None:
            return True
        # An instance holds its capacity until it is gone, including while it shuts down; a launch
        # holds the capacity its check found while it is pending.
        holding = sum(
            1
            for n in self._nodes.values()
            if n is not node
            and n.capacity_type == node.capacity_type
            and (
                (n.instance_id and (n.instance_type, n.zone) == (instance_type, zone))
                or (
                    not n.instance_id
                    and n.status == NodeStatus.PENDING
                    and n.reserved == (instance_type, zone)
                )
            )
        )
        return holding < limit

    def _new_instance_id(self) -> str:
        return f"i-{self._rng.getrandbits(68):017x}"

    def _by_instance(self, instance_id: str) -> _Node | None:
        return next((n for n in self._nodes.values() if instance_id and n.instance_id == instance_id), None)

    def _status(self, logical_id: str) -> NodeStatus:
        node = self._nodes.get(logical_id)
        return node.status if node else NodeStatus.NOT_FOUND

    def _event(
        self, group: str, instance_id: str, level: str, description: str, *, failure_message: str = ""
    ) -> None:
        event_id = f"evt-{next(self._event_ids):06d}"
        self._events.append(
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


def _string_list(
    value: object, default: Sequence[str], invalid: Callable[[str], BackendError]
) -> tuple[str, ...]:
    if value is None:
        return tuple(default)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise invalid(f"expected a non-empty list of strings, got {value!r}")
    return tuple(value)
