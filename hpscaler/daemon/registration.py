"""Registration: when a node hpscaler launched joins, patch on it what the plan assumed.

The provisioner tells the registrar which HyperPod nodes are up (`expect`, from every
ListClusterNodes); the registrar matches them to Kubernetes nodes and registers each once, in one
patch (see `hpscaler.provisioning.registration`). It sweeps on every provisioning round and on
every change the watch reports, so a node is registered within moments of appearing, while the
kubelet still holds it NotReady. Until it is registered and Ready its launch stays in flight: the
plan keeps counting it as the node it asked for, not as an unlabelled stranger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import HyperPodNode, NodeStatus
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.events import NodeRegistered, RegistrationFailed
from hpscaler.daemon.state import instance_id_of
from hpscaler.model import Node
from hpscaler.provisioning.registration import (
    UNREGISTERED_TAINT_KEY,
    instance_type_of,
    is_registered,
    match_nodes,
    registration,
)


class Registrar:
    """Registers the nodes hpscaler launched as they join."""

    def __init__(self, ctx: DaemonContext, refresh: Callable[[], Awaitable[object]] | None = None) -> None:
        """`refresh` runs a provisioning round (which lists HyperPod's nodes and calls `expect`)."""
        self.ctx = ctx
        self.refresh = refresh
        self._expected: dict[str, HyperPodNode] = {}  # NodeLogicalId -> a running node hpscaler launched
        self._asked: set[str] = set()  # unknown joining nodes a refresh was run for

    def expect(self, nodes: Sequence[HyperPodNode]) -> None:
        """Remember the running nodes of launches in flight (from HyperPod's node list)."""
        self._expected = {
            n.logical_id: n
            for n in nodes
            if n.logical_id in self.ctx.inflight and n.status is NodeStatus.RUNNING and n.instance_id
        }

    def inflight_instances(self) -> set[str]:
        """Instance ids of launches still in flight: their Nodes are represented by the launch."""
        return {n.instance_id for lid, n in self._expected.items() if lid in self.ctx.inflight}

    def waiting(self) -> bool:
        """Whether some launched node may still need registering."""
        return any(lid in self.ctx.inflight for lid in self._expected)

    async def sweep(self) -> int:
        """Register every expected node that has joined and is not registered yet; how many were."""
        ctx = self.ctx
        launched = [n for lid, n in self._expected.items() if lid in ctx.inflight]
        if not launched:
            return 0
        matched = match_nodes(launched, ctx.cache.nodes.values())
        done = 0
        for logical_id, node in matched.items():
            if is_registered(node):
                continue
            if await self._register(node, self._expected[logical_id]):
                done += 1
        return done

    async def run(self) -> None:
        """Sweep whenever the cluster cache changes while launched nodes wait for registration.

        A node of a managed group that joins unregistered, and whose instance HyperPod's last node
        list did not show, gets a provisioning round at once (once per node): it lists HyperPod's
        nodes, so the node is registered now rather than at the next launch check.
        """
        seen = -1
        while True:
            if self.ctx.cache.node_generation == seen:
                # Pod events: nothing joined or changed that registration cares about. Checked
                # before waiting: a node that joined during the last sweep or refresh is seen now.
                await self.ctx.changed.wait()
                continue
            seen = self.ctx.cache.node_generation
            if self.waiting():
                await self.sweep()
            if self.refresh is not None and self._strangers():
                await self.refresh()

    def _strangers(self) -> list[str]:
        """Unregistered nodes of managed groups that no expected launch matches (each reported once)."""
        nodes = self.ctx.cache.nodes
        self._asked &= nodes.keys()
        managed = self.ctx.managed_groups()
        known = {n.instance_id for n in self._expected.values()}
        new = [
            name
            for name, node in nodes.items()
            if name not in self._asked
            and node.instance_group in managed
            and not is_registered(node)
            and instance_id_of(node) not in known
        ]
        self._asked.update(new)
        return new

    async def _register(self, node: Node, launched: HyperPodNode) -> bool:
        ctx = self.ctx
        record = ctx.inflight.get(launched.logical_id)
        pool = next((p for p in ctx.config.node_pools if record and p.name == record.node_pool), None)
        pool = pool or ctx.pool_for_group(launched.group)
        group = ctx.groups.get(launched.group)
        type_name = instance_type_of(node, launched)
        if pool is None or group is None or type_name not in ctx.catalogue:
            ctx.log.warning(
                "node_registration_skipped", node=node.name, group=launched.group, instance_type=type_name
            )
            return False
        bound = [p for p in ctx.cache.pods.values() if p.node_name == node.name]
        patch = registration(
            node,
            pool,
            group,
            ctx.catalogue.get(type_name).labels(),
            ctx.config.settings.region,
            bound,
            planned=dict(record.labels) if record is not None and record.node_pool == pool.name else None,
        )
        try:
            await ctx.backends.kubernetes.register_node(node.name, patch.labels, patch.taints)
        except BackendError as exc:
            ctx.record(RegistrationFailed(node.name, str(exc)))
            return False
        # The watch brings the change soon; until then the cache must not ask for a second patch.
        registered = dataclasses.replace(
            node, labels={**node.labels, **patch.labels}, taints=(*node.taints, *patch.taints)
        )
        ctx.cache.assume_node(registered)
        if any(t.key == UNREGISTERED_TAINT_KEY for t in node.taints):
            ctx.log.warning(
                "group_taint_never_removed",
                node=node.name,
                group=launched.group,
                taint=UNREGISTERED_TAINT_KEY,
                fix="drop it from the group's KubernetesConfig.Taints (aws sagemaker update-cluster)",
            )
        ctx.record(
            NodeRegistered(
                node=node.name,
                instance=instance_id_of(node) or launched.instance_id,
                node_pool=pool.name,
                labels=len(patch.labels),
                taints=tuple(f"{t.key}:{t.effect}" for t in patch.taints),
                ready=node.ready,
            )
        )
        return True
