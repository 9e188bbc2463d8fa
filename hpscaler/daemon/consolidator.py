"""The consolidation loop: removes empty, underutilized and expired nodes, one validated step at a time."""

from __future__ import annotations

import anyio
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import DeleteResult, NodeStatus
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.drain import DISRUPTED_TAINT, REASON_ANNOTATION, Drainer
from hpscaler.daemon.events import ApiCalled, NodeDeleteFailed, NodeDeleteRefused, NodeDisrupted
from hpscaler.daemon.provisioner import Provisioner
from hpscaler.daemon.state import instance_id_of
from hpscaler.model import LABEL_NODEPOOL, Node, NodePool, as_pending
from hpscaler.provisioning.bookings import with_holders
from hpscaler.scheduling.disruption import ConsolidationDecision, Removal, decide_consolidation
from hpscaler.scheduling.types import SchedulingInput

DRAIN_GIVE_UP_SECONDS = 300.0
DELETE_ATTEMPTS = 4
DELETE_MAX_WAIT_SECONDS = 30.0


class DeleteRefused(Exception):
    """HyperPod answered BatchDeleteClusterNodes with a per-node failure for the node."""


class Consolidator:
    """Polls for consolidation opportunities and carries them out within disruption budgets."""

    def __init__(self, ctx: DaemonContext, provisioner: Provisioner) -> None:
        self.ctx = ctx
        self.provisioner = provisioner
        self.drainer = Drainer(ctx)

    def pool_of(self, node: Node) -> NodePool | None:
        """The NodePool that owns a node: its label, else the pool of its instance group."""
        name = node.labels.get(LABEL_NODEPOOL)
        if name:
            return next((p for p in self.ctx.config.node_pools if p.name == name), None)
        group = node.instance_group
        return self.ctx.pool_for_group(group) if group in self.ctx.managed_groups() else None

    def hopeless(self) -> frozenset[str]:
        """Pending pods the last plan found no room for anywhere.

        They do not hold consolidation back (as in Karpenter): otherwise one impossible pod would
        keep every empty node of the cluster forever.
        """
        plan = self.provisioner.last_plan
        return frozenset(u.pod for u in plan.unschedulable) if plan is not None else frozenset()

    def patching(self) -> frozenset[str]:
        """Instances HyperPod reports SystemUpdating (AMI patching) in its last node listing."""
        states = self.ctx.node_states
        return frozenset(i for i, status in states.items() if status is NodeStatus.SYSTEM_UPDATING)

    async def decide(self, exclude: str = "") -> ConsolidationDecision:
        """The pure decision over the current cache."""
        ctx = self.ctx
        nodes, pending = ctx.cache.snapshot()
        nodes = with_holders(nodes, ctx.held)  # booked capacity is never consolidated away
        try:
            pdbs = await ctx.backends.kubernetes.list_disruption_budgets()
        except BackendError as exc:
            ctx.log.warning("list_pdbs_failed", error=str(exc))
            # Nothing decided: look again at the next poll, not only once the cache changes.
            return ConsolidationDecision(recheck_at=ctx.clock.now())
        disrupting = {k: v for k, v in ctx.disrupting.items() if k != exclude}
        # HyperPod is patching these (AMI update): never a consolidation candidate, nor room for pods.
        patching = self.patching()
        for node in nodes:
            if instance_id_of(node) in patching:
                disrupting.setdefault(node.name, "SystemUpdating")
        base = SchedulingInput(pods=(), node_pools=(), node_classes=(), groups=(), catalogue=ctx.catalogue)
        hopeless = self.hopeless()
        return decide_consolidation(
            nodes=nodes,
            pending=[p for p in (*pending, *ctx.displaced.values()) if p.key not in hopeless],
            pool_of=self.pool_of,
            base=base,
            pdbs=pdbs,
            now=ctx.clock.now(),
            last_pod_change=ctx.cache.pod_change,
            disrupting=disrupting,
        )

    async def run(self) -> None:
        """Poll every `pollSeconds`; carry out each removal in its own task."""
        settings = self.ctx.config.settings.consolidation
        seen: tuple[int, int, frozenset[str], frozenset[str]] | None = None
        recheck_at = 0.0
        async with anyio.create_task_group() as tg:
            while True:
                await anyio.sleep(settings.poll_seconds)
                if not settings.enabled or self.ctx.inflight:
                    continue  # nodes on their way change the picture; wait until they land
                state = (
                    self.ctx.cache.generation,
                    len(self.ctx.disrupting),
                    self.hopeless(),
                    self.patching(),
                )
                if state == seen and self.ctx.clock.now() < recheck_at:
                    continue  # nothing changed and no timer matured: the last answer still holds
                decision = await self.decide()
                seen, recheck_at = state, decision.recheck_at
                for removal in decision.remove:
                    self.ctx.mark_for_deletion(removal.node, f"consolidation:{removal.reason}")
                    tg.start_soon(self.execute, removal, name=f"consolidation:{removal.node}")

    async def execute(self, removal: Removal) -> None:
        """Validate, drain and delete one node; undo the taint if it must stay after all."""
        ctx = self.ctx
        node = ctx.cache.nodes.get(removal.node)
        if node is None:
            ctx.unmark_for_deletion(removal.node)
            return
        try:
            await ctx.backends.kubernetes.taint_node(node.name, add=[DISRUPTED_TAINT])
            await ctx.backends.kubernetes.annotate_node(node.name, {REASON_ANNOTATION: removal.reason})
            if not await self._validated(removal):
                await self._abort(node, "no longer a valid consolidation")
                return
            if not await self.drainer.drain(node, deadline=None, give_up_after=DRAIN_GIVE_UP_SECONDS):
                await self._abort(node, "pods could not be evicted (PodDisruptionBudgets)")
                return
            await self._wait_empty(node)
            if not await self._delete(node):
                await self._abort(node, "HyperPod did not delete the node")
                return
            ctx.record(NodeDisrupted(node.name, removal.reason, removal.node_pool))
        except BackendError as exc:
            ctx.log.warning("consolidation_failed", node=node.name, error=str(exc))
            await self._abort(node, str(exc))

    async def _validated(self, removal: Removal) -> bool:
        ctx = self.ctx
        if removal.reason == "Expired":
            node = ctx.cache.nodes.get(removal.node)
            pods = self.drainer.pods_on(removal.node)
            if node is not None and pods:
                # Expiry replaces before it evicts: line up new capacity for the pods first.
                for pod in pods:
                    ctx.displace(as_pending(pod))
                await self.provisioner.reconcile("expiry")
                await self._wait_for_inflight()
            return True
        # Karpenter's validation delay: the cluster may change under a decision; look again.
        await anyio.sleep(ctx.config.settings.consolidation.validation_seconds)
        decision = await self.decide(exclude=removal.node)
        return any(r.node == removal.node for r in decision.remove)

    async def _wait_for_inflight(self) -> None:
        provisioning = self.ctx.config.settings.provisioning
        timeout = provisioning.launch_timeout_seconds + provisioning.registration_timeout_seconds
        await self.ctx.wait_until(lambda: not self.ctx.inflight, timeout)

    async def _wait_empty(self, node: Node) -> None:
        longest = max((p.termination_grace_seconds for p in self.drainer.pods_on(node.name)), default=0)
        await self.ctx.wait_until(
            lambda: (
                not any(p.node_name == node.name and not p.is_daemonset for p in self.ctx.cache.pods.values())
            ),
            longest + 60,
        )

    async def _delete(self, node: Node) -> bool:
        """Delete the drained node's instance; False when HyperPod keeps refusing (it is reported).

        A per-node failure is retried with jittered backoff. A node HyperPod is patching
        (SystemUpdating) is left alone: its instance is never deleted under an AMI update.
        """
        ctx = self.ctx
        retrying = AsyncRetrying(
            stop=stop_after_attempt(DELETE_ATTEMPTS),
            wait=wait_random_exponential(multiplier=1.0, max=DELETE_MAX_WAIT_SECONDS),
            retry=retry_if_exception_type(DeleteRefused),
            sleep=anyio.sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._delete_once(node)
        except DeleteRefused as exc:
            ctx.record(NodeDeleteFailed(node.name, DELETE_ATTEMPTS, str(exc)))
        return False

    async def _delete_once(self, node: Node) -> bool:
        ctx = self.ctx
        instance = instance_id_of(node)
        hp_nodes = await ctx.backends.hyperpod.list_nodes()
        match = next((n for n in hp_nodes if instance and n.instance_id == instance), None)
        if match is None:
            ctx.log.warning("node_not_in_hyperpod", node=node.name, instance=instance)
            await ctx.backends.kubernetes.delete_node(node.name)
            return True
        if match.status is NodeStatus.SYSTEM_UPDATING:
            ctx.log.info("node_delete_skipped", node=node.name, status=match.status.value)
            return False
        result: DeleteResult
        if match.logical_id:
            result = await ctx.backends.hyperpod.batch_delete_nodes([match.logical_id])
        else:  # listed without a logical id: delete by instance id (NodeIds), never as a logical id
            result = await ctx.backends.hyperpod.batch_delete_nodes([], [instance])
        ctx.record(ApiCalled("BatchDeleteClusterNodes"))
        refused = [f for f in result.failed if f.code != "NodeIdNotFound"]
        if refused:
            ctx.record(NodeDeleteRefused(node.name, refused[0].code, refused[0].message))
            raise DeleteRefused(f"{refused[0].code}: {refused[0].message}")
        if match.logical_id:
            ctx.mark_gone(match.logical_id)
        return True

    async def _abort(self, node: Node, why: str) -> None:
        ctx = self.ctx
        ctx.unmark_for_deletion(node.name)
        pods = ctx.cache.pods
        ctx.undisplace([k for k in ctx.displaced if getattr(pods.get(k), "node_name", "") == node.name])
        try:
            await ctx.backends.kubernetes.taint_node(node.name, remove=[DISRUPTED_TAINT.key])
            await ctx.backends.kubernetes.annotate_node(node.name, {REASON_ANNOTATION: None})
        except BackendError as exc:
            ctx.log.warning("untaint_failed", node=node.name, error=str(exc))
        ctx.log.info("consolidation_aborted", node=node.name, why=why)
