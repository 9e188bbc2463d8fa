"""Registration on the fakes: nodes hpscaler launched get what the plan assumed before any pod lands.

The fake world labels a joining node as HyperPod does (instance type, zone, hostname, instance
group, the group's KubernetesConfig labels and taints), so every pod that needs a NodePool label or
taint depends on the daemon's registration patch.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from daemon_harness import C5_2X, SPOT_AZ1, ZONE_A, running, wait_for, web_pod, with_pool
from prometheus_client import generate_latest

from hpscaler.backends.protocols import BackendError
from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.events import NodeRegistered, RegistrationFailed
from hpscaler.model import (
    LABEL_CAPACITY_TYPE,
    LABEL_INSTANCE_CPU,
    LABEL_INSTANCE_FAMILY,
    LABEL_INSTANCE_GROUP,
    LABEL_NODEPOOL,
    LABEL_REGISTERED,
    LABEL_ZONE,
    Node,
    Pod,
    Requirement,
    Taint,
    Toleration,
)
from hpscaler.service.metrics import registry_for

ML = Taint("team", "NoSchedule", "ml")
STARTUP = Taint("example.com/agent-not-ready", "NoExecute")


def ml_pod(name: str, cpu: int = 1000) -> Pod:
    return web_pod(
        name, cpu=cpu, node_selector={"team": "ml"}, tolerations=(Toleration("team", "Equal", "ml"),)
    )


def ml_config(config: LoadedConfig, **changes: object) -> LoadedConfig:
    return with_pool(config, labels=(("team", "ml"),), taints=(ML,), **changes)


@pytest.mark.looptime
async def test_a_joining_node_is_registered_in_one_patch_before_it_is_ready(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    config = ml_config(seed_config, startup_taints=(STARTUP,))
    async with running(config, catalogue) as h:
        kube = h.world.kubernetes
        patches: list[tuple[str, bool]] = []
        register = kube.register_node

        async def spy(name: str, labels: object, taints: object) -> None:
            node = kube.node(name)
            patches.append((name, node is not None and node.ready))
            await register(name, labels, taints)  # type: ignore[arg-type]

        kube.register_node = spy  # type: ignore[method-assign]
        for i in range(7):
            kube.add_pod(ml_pod(f"ml-{i}"))
        await wait_for(lambda: bool(kube.nodes()) and kube.nodes()[0].ready, 600)
        (node,) = kube.nodes()
        assert patches == [(node.name, False)]  # once, while the kubelet still held it NotReady
        spec = catalogue.get(C5_2X)
        assert {
            "team": "ml",
            LABEL_NODEPOOL: "gpunodepool",
            LABEL_CAPACITY_TYPE: "spot",
            LABEL_INSTANCE_GROUP: SPOT_AZ1,
            LABEL_INSTANCE_FAMILY: "c5",
            LABEL_INSTANCE_CPU: str(spec.vcpu),
            LABEL_REGISTERED: "true",
            "topology.kubernetes.io/zone": ZONE_A,
            "topology.kubernetes.io/region": "us-west-2",
        }.items() <= node.labels.items()
        assert ML in node.taints and STARTUP in node.taints
        # The startup taint is the agent's to remove: hpscaler planned as if it were absent (no
        # second node while it is there), and the pods land once the agent is done.
        await h.daemon.provisioner.reconcile("test")
        assert not any(p.node_name for p in kube.pods() if p.name.startswith("ml-"))
        assert h.world.hyperpod.calls["batch_add_nodes"] == 1
        await kube.taint_node(node.name, remove=[STARTUP.key])
        await wait_for(
            lambda: sum(bool(p.node_name) for p in kube.pods() if p.name.startswith("ml-")) == 7, 60
        )
        await wait_for(lambda: not h.ctx.inflight, 30)
        assert h.world.hyperpod.calls["batch_add_nodes"] == 1
        # Registered once: the startup taint, gone, is never put back.
        for _ in range(5):
            await h.daemon.provisioner.reconcile("test")
        assert STARTUP not in kube.nodes()[0].taints
        assert len(patches) == 1
        metrics = generate_latest(registry_for(lambda: h.ctx, lambda: True)).decode()
        assert 'karpenter_nodeclaims_registered_total{nodepool="gpunodepool"} 1.0' in metrics


@pytest.mark.looptime
async def test_unregistered_node_stays_in_flight_and_no_second_node_is_asked_for(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(ml_config(seed_config), catalogue) as h:
        kube = h.world.kubernetes
        kube.faults.fail_next("register_node", BackendError("apiserver busy"), times=4)
        for i in range(3):
            kube.add_pod(ml_pod(f"ml-{i}"))
        await wait_for(lambda: sum(bool(p.node_name) for p in kube.pods()) == 3, 900)
        assert h.world.hyperpod.calls["batch_add_nodes"] == 1
        assert len(kube.nodes()) == 1
        assert h.ctx.stats.events.count(RegistrationFailed) == 4
        assert h.ctx.stats.events.count(NodeRegistered) == 1


@pytest.mark.looptime
async def test_a_node_left_unregistered_by_a_killed_daemon_is_registered_after_restart(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(ml_config(seed_config), catalogue) as h:
        kube = h.world.kubernetes
        for i in range(2):
            kube.add_pod(ml_pod(f"ml-{i}"))
        await wait_for(lambda: h.world.hyperpod.calls["batch_add_nodes"] == 1, 60)
        h.daemon.stop()  # dies before the node joins
        await wait_for(lambda: bool(kube.nodes()) and kube.nodes()[0].ready, 600)
        (node,) = kube.nodes()
        assert LABEL_NODEPOOL not in node.labels and not any(p.node_name for p in kube.pods())
        successor = h.new_daemon()
        await h.tg.start(successor.run)
        await wait_for(lambda: sum(bool(p.node_name) for p in kube.pods()) == 2, 120)
        assert kube.nodes()[0].labels["team"] == "ml"
        assert h.world.hyperpod.calls["batch_add_nodes"] == 1  # adopted, not asked for again
        successor.stop()


def test_nodes_without_the_nodepool_label_count_against_its_limits_through_their_group(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    # Two nodes that joined before hpscaler ran carry only HyperPod's labels; the limit is 2 nodes.
    from hpscaler.scheduling.scheduler import solve
    from hpscaler.scheduling.types import SchedulingInput

    config = with_pool(seed_config, limits=(("nodes", 2),))
    spec = catalogue.get(C5_2X)
    nodes = [
        Node(
            f"n{i}",
            {LABEL_INSTANCE_GROUP: SPOT_AZ1, LABEL_ZONE: ZONE_A},
            spec.allocatable(),
        )
        for i in range(2)
    ]
    inp = SchedulingInput(
        pods=[web_pod(f"w-{i}") for i in range(20)],  # 14 fit the two nodes; 6 would need a third
        node_pools=config.node_pools,
        node_classes=config.node_classes,
        groups=config.instance_groups,
        catalogue=catalogue,
        nodes=nodes,
    )
    plan = solve(inp)
    assert plan.new_nodes == []
    assert len(plan.unschedulable) == 6
    assert all("limit" in u.reason.lower() for u in plan.unschedulable)
    # A node of a group no NodeClass lists counts against nothing.
    free = [replace(n, labels={**n.labels, LABEL_INSTANCE_GROUP: "manual"}) for n in nodes]
    assert len(solve(replace(inp, nodes=free)).new_nodes) >= 1


def test_planning_nodes_ignore_startup_taints_of_their_pool(seed_config: LoadedConfig) -> None:
    from hpscaler.scheduling.membership import PoolMembership, planning_nodes

    config = with_pool(seed_config, startup_taints=(STARTUP,))
    membership = PoolMembership(config.node_pools, config.node_classes)
    other = Taint("other", "NoSchedule")
    mine = Node("n1", {LABEL_INSTANCE_GROUP: SPOT_AZ1}, {"cpu": 1000}, taints=(STARTUP, other))
    stranger = Node("n2", {LABEL_INSTANCE_GROUP: "not-managed"}, {"cpu": 1000}, taints=(STARTUP,))
    planned = planning_nodes([mine, stranger], membership)
    assert planned[0].taints == (other,) and mine.taints == (STARTUP, other)
    assert planned[1] is stranger
    assert (
        membership.pool_name_of(mine)
        == "gpunodepool"
        == membership.pool_name_of(replace(stranger, labels={LABEL_NODEPOOL: "gpunodepool"}))
    )
    assert membership.pool_of(stranger) is None


@pytest.mark.looptime
async def test_a_value_the_plan_chose_for_an_open_nodepool_key_is_registered(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    (pool,) = seed_config.node_pools
    config = with_pool(seed_config, requirements=(*pool.requirements, Requirement("size", "In", ("s", "m"))))
    async with running(config, catalogue) as h:
        kube = h.world.kubernetes
        for i in range(2):
            kube.add_pod(web_pod(f"m-{i}", node_selector={"size": "m"}))
        await wait_for(lambda: sum(bool(p.node_name) for p in kube.pods()) == 2, 600)
        (node,) = kube.nodes()
        assert node.labels["size"] == "m"
        (record,) = [r for r in h.world.hyperpod.nodes()]
        assert h.world.hyperpod.calls["batch_add_nodes"] == 1 and record.group == SPOT_AZ1
