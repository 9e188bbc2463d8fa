"""In-memory fakes of every backend, sharing one virtual clock; they power tests and the simulator."""

from hpscaler.fake.hyperpod import (
    INSUFFICIENT_CAPACITY,
    CapacityChange,
    FakeHyperPod,
    MeterRecord,
    Offering,
    Reclaim,
)
from hpscaler.fake.kubernetes import (
    FakeKubernetes,
    FaultInjector,
    KubeCounters,
    NodeRemoval,
    PodKill,
    PodTermination,
    RecordedEvent,
    Timers,
    copy_node,
    copy_pod,
)
from hpscaler.fake.signals import FakeInterruptionQueue, FakePlacementScores
from hpscaler.fake.specs import InstanceSpecLike, StaticSpec, resolve_specs
from hpscaler.fake.world import World, instance_group, node_name

__all__ = [
    "INSUFFICIENT_CAPACITY",
    "CapacityChange",
    "FakeHyperPod",
    "FakeInterruptionQueue",
    "FakeKubernetes",
    "FakePlacementScores",
    "FaultInjector",
    "InstanceSpecLike",
    "KubeCounters",
    "MeterRecord",
    "NodeRemoval",
    "Offering",
    "PodKill",
    "PodTermination",
    "Reclaim",
    "RecordedEvent",
    "StaticSpec",
    "Timers",
    "World",
    "copy_node",
    "copy_pod",
    "instance_group",
    "node_name",
    "resolve_specs",
]
