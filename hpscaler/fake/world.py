"""The fakes wired together on one clock: HyperPod instances become Kubernetes nodes, Spot is reclaimed.

`World.run()` drives every background behaviour (launches, joins, retries, grace periods, job
completions, random Spot interruptions) in one task group; under the `looptime` event loop two
virtual hours pass in seconds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from hpscaler.agent.notice import NOTICE_ANNOTATION, Notice
from hpscaler.backends.protocols import (
    HyperPodCluster,
    InterruptionSource,
    KubernetesCluster,
    PlacementScores,
)
from hpscaler.backends.types import HyperPodNode, InterruptionKind, NodeStatus
from hpscaler.catalogue import Catalogue
from hpscaler.clock import Clock, LoopClock
from hpscaler.fake.capacity import Offering
from hpscaler.fake.hyperpod import FakeHyperPod
from hpscaler.fake.kubernetes import FakeKubernetes
from hpscaler.fake.signals import FakeInterruptionQueue, FakePlacementScores
from hpscaler.fake.specs import InstanceSpecLike
from hpscaler.fake.timers import Timers
from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_INSTANCE_GROUP,
    LABEL_INSTANCE_TYPE,
    LABEL_ZONE,
    CapacityType,
    InstanceGroup,
    Node,
    Taint,
)

# The Spot page says HyperPod taints an interrupted node but names no key; the fake uses the first
# of `spec.interruption.taintKeys` so the daemon's default setting recognises it.
DEFAULT_INTERRUPTION_TAINT = Taint("aws-node-termination-handler/spot-itn", "NoSchedule")


def instance_group(
    name: str,
    instance_type: str,
    capacity_type: CapacityType | str = CapacityType.ON_DEMAND,
    zones: Sequence[str] = ("us-west-2a",),
    zone_ids: Sequence[str] = (),
    *,
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Taint] = (),
    target_count: int = 0,
) -> InstanceGroup:
    """A single-type InstanceGroup in a few words, for tests and scenarios."""
    return InstanceGroup(
        name=name,
        instance_types=(instance_type,),
        capacity_type=CapacityType(capacity_type),
        zones=tuple(zones),
        zone_ids=tuple(zone_ids),
        target_count=target_count,
        labels=tuple(sorted((labels or {}).items())),
        taints=tuple(taints),
    )


def node_name(instance_id: str) -> str:
    """The Kubernetes node name HyperPod gives an instance."""
    return f"hyperpod-{instance_id}"


class World:
    """FakeKubernetes + FakeHyperPod + placement scores + interruption queue on one clock and timer heap."""

    def __init__(
        self,
        cluster_name: str,
        groups: Sequence[InstanceGroup],
        *,
        clock: Clock,
        capacity: Mapping[Offering, int | None] | None = None,
        specs: Mapping[str, InstanceSpecLike] | None = None,
        catalogue: Catalogue | None = None,
        scores: Mapping[str, float] | None = None,
        launch_seconds: float = 90.0,
        join_seconds: float = 30.0,
        retry_seconds: float = 60.0,
        shutdown_seconds: float = 30.0,
        spot_interruptions_per_hour: float | Mapping[str, float] = 0.0,
        notice_probability: float = 1.0,
        interruption_check_seconds: float = 60.0,
        queue_wait_seconds: float = 20.0,
        visibility_seconds: float = 30.0,
        seed: int = 0,
        notice_via: Sequence[str] = ("sqs",),
        notice_delay: float = 0.0,
        interruption_taint: Taint = DEFAULT_INTERRUPTION_TAINT,
    ) -> None:
        """`spot_interruptions_per_hour` is per running Spot instance, overall or by group name."""
        self.clock = clock
        self.timers = Timers()
        self.kubernetes = FakeKubernetes(clock, timers=self.timers)
        self.interruptions = FakeInterruptionQueue(
            wait_seconds=queue_wait_seconds, visibility_seconds=visibility_seconds
        )
        self.hyperpod = FakeHyperPod(
            cluster_name,
            groups,
            clock,
            capacity=capacity,
            specs=specs,
            catalogue=catalogue,
            interruptions=self.interruptions,
            launch_seconds=launch_seconds,
            join_seconds=join_seconds,
            retry_seconds=retry_seconds,
            shutdown_seconds=shutdown_seconds,
            seed=seed,
            timers=self.timers,
            notice_via=notice_via,
            notice_delay=notice_delay,
        )
        self.interruption_taint = interruption_taint
        self._zone_ids = {z: i for g in groups for z, i in zip(g.zones, g.zone_ids, strict=False)}
        self.placement = FakePlacementScores(scores, zone_ids=self._zone_ids)
        self.spot_interruptions_per_hour = spot_interruptions_per_hour
        self.notice_probability = notice_probability
        self.interruption_check_seconds = interruption_check_seconds
        self._rng = random.Random(seed)
        self.hyperpod.on_running.append(self._instance_running)
        self.hyperpod.on_gone.append(self._instance_gone)
        self.hyperpod.on_notice.append(self._notice_on_node)

    @classmethod
    def from_groups(
        cls,
        *groups: InstanceGroup,
        cluster_name: str = "fake-cluster",
        clock: Clock | None = None,
        **options: Any,
    ) -> World:
        """A world for these groups; the clock defaults to the running loop's (call it inside the loop)."""
        return cls(cluster_name, groups, clock=clock if clock is not None else LoopClock(), **options)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every background behaviour until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.timers.run, name="fake:timers")
            tg.start_soon(self._reclaim_spot, name="fake:spot-reclaim")
            task_status.started()

    def report(self) -> dict[str, Any]:
        """The simulator's scorecard: money, launches, disruption and scheduling counts."""
        cost = self.hyperpod.cost()
        on_demand = self.hyperpod.on_demand_equivalent_cost()
        launched: dict[str, dict[str, int]] = {}
        for (group, capacity_type), count in sorted(self.hyperpod.launched.items()):
            launched.setdefault(group, {})[capacity_type.value] = count
        k = self.kubernetes.counters
        return {
            "time": self.clock.now(),
            "cost": cost,
            "on_demand_cost": on_demand,
            "savings": 1.0 - cost / on_demand if on_demand else 0.0,
            "nodes_launched": launched,
            "pods_killed": k.pods_killed,
            "evictions": k.evictions,
            "evictions_blocked": k.evictions_blocked,
            "binds": k.binds,
            "pods_recreated": k.pods_recreated,
            "pods_completed": k.pods_completed,
            "pods_pending": sum(1 for p in self.kubernetes.pods() if p.phase == "Pending"),
            "spot_interruptions": self.hyperpod.interrupted,
            "hyperpod_calls": dict(self.hyperpod.calls),
            "interruption_messages": self.interruptions.received,
        }

    def _instance_running(self, instance: HyperPodNode) -> None:
        """The instance's kubelet registers a Node carrying only what HyperPod puts on it.

        HyperPod labels its nodes with the instance type, zone, hostname and
        `sagemaker.amazonaws.com/instance-group-name`, and applies the group's `KubernetesConfig`
        labels and taints, which it keeps reconciled ("Configure custom Kubernetes labels and taints",
        sagemaker-hyperpod-eks-custom-labels-and-taints; the health labels of
        sagemaker-hyperpod-eks-resiliency-node-labels come later, from its agents). Nothing of
        Karpenter's is there: no `karpenter.sh/*`, no `karpenter.k8s.aws/*`, no capacity type.
        The kubelet registers the Node NotReady (tainted `node.kubernetes.io/not-ready`), so no
        workload pod lands on it before it turns Ready.
        """
        spec = self.hyperpod.specs[instance.instance_type]
        group = self.hyperpod.group(instance.group)
        name = node_name(instance.instance_id)
        labels = {
            **dict(group.labels),
            LABEL_INSTANCE_TYPE: instance.instance_type,
            LABEL_ZONE: instance.zone,
            LABEL_INSTANCE_GROUP: instance.group,
            LABEL_HOSTNAME: name,
        }
        self.kubernetes.add_node(
            Node(
                name=name,
                labels=labels,
                allocatable=spec.allocatable(),
                taints=group.taints,
                ready=False,
                provider_id=f"aws:///{instance.zone}/{instance.instance_id}",
                created=self.clock.now(),
            )
        )
        # The kubelet registers at once but reports Ready only after the lifecycle scripts finish.
        self.timers.call_later(
            self.hyperpod.join_seconds, partial(self.kubernetes.set_node_ready, name, True)
        )

    def _notice_on_node(self, via: str, instance_id: str, deadline: float) -> None:
        """A notice the node itself shows: HyperPod's taint, or the agent's annotation from IMDS."""
        name = node_name(instance_id)
        if via == "taint":
            self.kubernetes.mark_node(name, taints=[self.interruption_taint])
        elif via == "agent":
            notice = Notice(
                InterruptionKind.SPOT_INTERRUPTION, deadline - self.hyperpod.notice_seconds, deadline
            )
            self.kubernetes.mark_node(name, annotations={NOTICE_ANNOTATION: notice.encode()})

    def _instance_gone(self, instance: HyperPodNode, reason: str) -> None:
        if instance.instance_id:
            self.kubernetes.remove_node(node_name(instance.instance_id), reason)

    def _rate(self, group: str) -> float:
        rate = self.spot_interruptions_per_hour
        return rate if isinstance(rate, int | float) else rate.get(group, 0.0)

    async def _reclaim_spot(self) -> None:
        """Interrupt running Spot instances at random, as a Poisson process per instance."""
        rates = (
            [self.spot_interruptions_per_hour]
            if isinstance(self.spot_interruptions_per_hour, int | float)
            else list(self.spot_interruptions_per_hour.values())
        )
        if not any(r > 0 for r in rates):
            return
        step = self.interruption_check_seconds
        while True:
            await anyio.sleep(step)
            for instance in self.hyperpod.nodes():
                if instance.capacity_type != CapacityType.SPOT or instance.status != NodeStatus.RUNNING:
                    continue
                chance = 1.0 - math.exp(-self._rate(instance.group) * step / 3600.0)
                if self._rng.random() < chance:
                    notice = self._rng.random() < self.notice_probability
                    self.hyperpod.interrupt(instance.instance_id, notice=notice)


if TYPE_CHECKING:

    def _implements_protocols(
        k: FakeKubernetes, h: FakeHyperPod, s: FakePlacementScores, q: FakeInterruptionQueue
    ) -> tuple[KubernetesCluster, HyperPodCluster, PlacementScores, InterruptionSource]:
        """Lets mypy prove that the fakes implement the backend interfaces."""
        return k, h, s, q
