"""An in-memory SageMaker HyperPod cluster in continuous provisioning mode: the `HyperPodCluster` API.

Continuous provisioning: BatchAddClusterNodes raises the target count and returns at once; nodes
launch in the background (`fake.lifecycle`, which also holds the node states and cluster events),
and a launch that finds no capacity (`fake.capacity`) fails and is retried until it succeeds or the
node is deleted. Billing runs per instance from launch to shutdown (`fake.metering`).

BatchAddClusterNodes is validated as the API reference says (`fake.requests`) and replays a
ClientToken's answer for 8 hours. BatchDeleteClusterNodes takes NodeLogicalIds and NodeIds "with a
combined maximum of 50 identifiers" and reports per-node failures (BatchDeleteClusterNodesError
codes NodeIdNotFound, InvalidNodeStatus, NodeIdInUse); `refuse_delete` injects one. Tests move
nodes through their states with `set_node_status` and `termination_failures`.

A Spot notice reaches hpscaler only through the sources a scenario names (`notice_via`): the SQS
queue (EC2's EventBridge warning, if it reaches the account at all), the node agent (IMDS) or
HyperPod's taint, each after `notice_delay` seconds. HyperPod's own events carry no notice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

from hpscaler.backends.errors import InvalidRequestError
from hpscaler.backends.types import (
    AddedNode,
    AddFailure,
    AddResult,
    ClusterDescription,
    ClusterEvent,
    DeleteFailure,
    DeleteResult,
    HyperPodNode,
    NodeStatus,
)
from hpscaler.catalogue import Catalogue
from hpscaler.clock import Clock
from hpscaler.fake.capacity import Offering, OfferingCapacity
from hpscaler.fake.cluster_document import ClusterSettings, describe_cluster_document
from hpscaler.fake.faults import FaultInjector
from hpscaler.fake.lifecycle import ClusterNode, LaunchTiming, NodeLifecycle
from hpscaler.fake.metering import MeterRecord
from hpscaler.fake.requests import validate_add
from hpscaler.fake.signals import FakeInterruptionQueue
from hpscaler.fake.specs import InstanceSpecLike, resolve_specs
from hpscaler.fake.timers import Timers
from hpscaler.model import CapacityType, InstanceGroup
from hpscaler.provisioning.batching import MAX_LOGICAL_IDS_PER_DELETE, AddRequest, NodesToAdd

TOKEN_TTL_SECONDS = 8 * 3600.0


@dataclass(frozen=True, slots=True)
class Reclaim:
    """A Spot instance reclaimed: with a two-minute notice, or terminated right away."""

    time: float
    instance_id: str
    group: str
    notice: bool


@dataclass(frozen=True, slots=True)
class _TokenUse:
    time: float
    fingerprint: tuple[str, tuple[NodesToAdd, ...]]
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
        self.join_seconds = join_seconds  # used by the World to make the K8s node Ready
        self.notice_seconds = notice_seconds
        self.state_change_messages = state_change_messages
        self.notice_via = tuple(notice_via)
        self.silent_instances: set[str] = set()  # their termination sends no EC2 state change
        self.notice_delay = notice_delay
        # (via, instance id, deadline) for notices delivered on the node: "agent" and "taint".
        self.on_notice: list[Callable[[str, str, float], None]] = []
        self.specs = resolve_specs([t for g in groups for t in g.instance_types], specs, catalogue)
        self.calls: Counter[str] = Counter()
        self.add_requests: list[AddRequest] = []  # every BatchAddClusterNodes call, as made
        self.delete_requests: list[tuple[str, ...]] = []
        self.interrupted = 0  # Spot instances reclaimed, with notice or without
        self.reclaims: list[Reclaim] = []
        self.rebalances: list[tuple[float, str]] = []  # (time, instance id) of each recommendation
        self.settings = ClusterSettings()  # NodeProvisioningMode, NodeRecovery, AutoScaling
        self.delete_refusals: dict[str, tuple[str, int]] = {}  # logical id -> (code, deletes refused)
        self._groups = {g.name: g for g in groups}
        self._capacity = OfferingCapacity(dict(capacity or {}))
        self._tokens: dict[str, _TokenUse] = {}
        timing = LaunchTiming(launch_seconds, capacity_error_seconds, retry_seconds, shutdown_seconds)
        self.lifecycle = NodeLifecycle(
            cluster_name,
            clock,
            self.timers,
            self._groups,
            self.specs,
            self._capacity,
            timing=timing,
            seed=seed,
        )
        self.lifecycle.on_terminated.append(self._state_change)
        # The lifecycle's own lists and counters, under the names tests and the World use.
        self.on_running = self.lifecycle.on_running
        self.on_gone = self.lifecycle.on_gone
        self.launched = self.lifecycle.launched
        self.termination_failures = self.lifecycle.termination_failures
        self.capacity_changes = self._capacity.changes
        for group in groups:
            if not group.zones:
                raise ValueError(f"instance group {group.name} needs at least one zone to launch in")
            # As CreateCluster with InstanceCount: the initial nodes launch like any other.
            self.lifecycle.add(group, group.target_count, group.instance_types, group.zones)

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
        return [e for e in self.lifecycle.events if e.time > since]

    async def batch_add_nodes(self, request: AddRequest) -> AddResult:
        """Validate, replay an idempotent token, or raise target counts and queue new nodes."""
        self.calls["batch_add_nodes"] += 1
        self.add_requests.append(request)
        self.faults.check("batch_add_nodes")
        entries = validate_add(request, self.cluster_name, self._groups)
        now = self.clock.now()
        token = request.client_token
        fingerprint = (request.cluster, request.entries)
        if token:
            used = self._tokens.get(token)
            if used is not None and now - used.time < TOKEN_TTL_SECONDS:
                if used.fingerprint != fingerprint:
                    raise InvalidRequestError(
                        "ClientToken reused with different parameters", code="IdempotentParameterMismatch"
                    )
                return AddResult(
                    tuple(AddedNode(i, g, self.lifecycle.status(i)) for i, g in used.added), used.failed
                )
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
                added.extend((i, name) for i in self.lifecycle.add(group, count, types, zones))
        if token:
            self._tokens[token] = _TokenUse(now, fingerprint, tuple(added), tuple(failed))
        return AddResult(tuple(AddedNode(i, g, NodeStatus.PENDING) for i, g in added), tuple(failed))

    async def batch_delete_nodes(
        self, logical_ids: Sequence[str], instance_ids: Sequence[str] = ()
    ) -> DeleteResult:
        """ShuttingDown at once (billing stops, target drops), removed when its shutdown is over.

        Like the AWS backend, it sends one request per 50 identifiers (each counted and recorded).
        """
        ids = [(i, True) for i in logical_ids] + [(i, False) for i in instance_ids]
        if not ids:
            raise InvalidRequestError("NodeLogicalIds or NodeIds must hold an id", code="ValidationException")
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
        by_instance = {n.instance_id: n.logical_id for n in self.lifecycle.nodes.values() if n.instance_id}
        wanted = [(i, i) for i in logical_ids] + [(i, by_instance.get(i, "")) for i in instance_ids]
        for given, logical_id in wanted:
            node = self.lifecycle.nodes.get(logical_id)
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
            self.lifecycle.shut_down(node)
        return DeleteResult(tuple(deleted), tuple(failed))

    # --- test-, world- and simulator-facing methods --------------------------------------------

    def update_cluster(self, groups: Sequence[InstanceGroup]) -> None:
        """UpdateCluster: add instance groups, or change existing ones (status, zones, taints)."""
        self.specs.update(resolve_specs([t for g in groups for t in g.instance_types], self.specs))
        for group in groups:
            self._groups[group.name] = group
            self.lifecycle.targets.setdefault(group.name, 0)

    def set_node_status(self, logical_id: str, status: NodeStatus, message: str = "") -> None:
        """Move a node to a status HyperPod sets on its own (reboot, patching, deep health checks)."""
        self.lifecycle.set_status(logical_id, status, message)

    def refuse_delete(self, logical_id: str, code: str = "InvalidNodeStatus", times: int = 1) -> None:
        """Make the next `times` BatchDeleteClusterNodes of this node fail for it alone, with `code`."""
        self.delete_refusals[logical_id] = (code, times)

    def groups(self) -> list[InstanceGroup]:
        """Instance groups with their live current and target counts."""
        nodes = self.lifecycle.nodes.values()
        running = Counter(n.group for n in nodes if n.status == NodeStatus.RUNNING)
        targets = self.lifecycle.targets
        return [
            replace(g, current_count=running[g.name], target_count=targets[g.name])
            for g in self._groups.values()
        ]

    def group(self, name: str) -> InstanceGroup:
        """One group as configured."""
        return self._groups[name]

    def nodes(self) -> list[HyperPodNode]:
        """Every node not yet removed, in creation order (no API call counted)."""
        return [n.view() for n in self.lifecycle.nodes.values()]

    def node_by_instance(self, instance_id: str) -> HyperPodNode | None:
        """The node an instance backs, if it is still there."""
        node = self.lifecycle.by_instance(instance_id)
        return node.view() if node else None

    def events(self) -> list[ClusterEvent]:
        """All cluster events so far."""
        return list(self.lifecycle.events)

    def set_capacity(
        self, instance_type: str, zone: str, capacity_type: CapacityType, count: int | None
    ) -> None:
        """Limit concurrently running instances of an offering (None: unlimited)."""
        try:
            now = self.clock.now()
        except RuntimeError:  # set-up code outside the event loop
            now = 0.0
        self._capacity.set((instance_type, zone, capacity_type), count, now)

    def capacity(self, instance_type: str, zone: str, capacity_type: CapacityType) -> int | None:
        """The offering's capacity as set (None: unlimited)."""
        return self._capacity.get((instance_type, zone, capacity_type))

    def has_room(self, group: str) -> bool:
        """Whether a launch in the group would find capacity now, in some type and zone it allows."""
        config = self._groups[group]
        probe = ClusterNode("", group, config.capacity_type, config.instance_types, config.zones)
        return any(self.lifecycle.has_room(t, z, probe) for t in config.instance_types for z in config.zones)

    def interrupt(self, instance_id: str, *, notice: bool = True) -> None:
        """Reclaim a Spot instance: a 2-minute notice then termination, or termination right away."""
        node = self.lifecycle.by_instance(instance_id)
        if node is None:
            raise ValueError(f"no live instance {instance_id}")
        if node.interrupted:
            return
        node.interrupted = True
        self.interrupted += 1
        self.reclaims.append(Reclaim(self.clock.now(), instance_id, node.group, notice))
        if not notice:
            self.lifecycle.terminate(node.logical_id, "spot-interruption")
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
            self.notice_seconds, partial(self.lifecycle.terminate, node.logical_id, "spot-interruption")
        )

    def rebalance(self, instance_id: str) -> None:
        """A rebalance recommendation: a message only, the instance stays."""
        self.rebalances.append((self.clock.now(), instance_id))
        self.interruptions.put_rebalance(instance_id, self.clock.now())

    def meter_records(self) -> list[MeterRecord]:
        """Copies of every instance's billing record, in launch order."""
        return self.lifecycle.meter.records()

    def cost(self) -> float:
        """USD billed so far at each instance's own price."""
        return self.lifecycle.meter.cost(self.clock.now())

    def on_demand_equivalent_cost(self) -> float:
        """What the same instance-seconds would have cost On-Demand."""
        return self.lifecycle.meter.on_demand_equivalent_cost(self.clock.now())

    # --- internals -----------------------------------------------------------------------------

    def _deliver_notice(self, via: str, instance_id: str, deadline: float) -> None:
        if via == "sqs":
            self.interruptions.put_spot_warning(instance_id, deadline - self.notice_seconds, deadline)
        for callback in self.on_notice:
            callback(via, instance_id, deadline)

    def _state_change(self, instance_id: str) -> None:
        """EC2's "instance state-change notification" for an instance that was terminated."""
        if self.state_change_messages and instance_id not in self.silent_instances:
            self.interruptions.put_terminated(instance_id, self.clock.now())
