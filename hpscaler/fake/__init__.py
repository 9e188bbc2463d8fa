"""In-memory fakes of every backend, sharing one virtual clock; they power tests and the simulator."""

from hpscaler.fake.capacity import CapacityChange, Offering
from hpscaler.fake.copies import copy_node, copy_pod
from hpscaler.fake.faults import FaultInjector
from hpscaler.fake.hyperpod import FakeHyperPod, Reclaim
from hpscaler.fake.kubernetes import FakeKubernetes
from hpscaler.fake.leases import FakeLeases
from hpscaler.fake.lifecycle import INSUFFICIENT_CAPACITY
from hpscaler.fake.metering import MeterRecord
from hpscaler.fake.records import KubeCounters, NodeRemoval, PodKill, PodTermination, RecordedEvent
from hpscaler.fake.signals import FakeInterruptionQueue, FakePlacementScores
from hpscaler.fake.specs import InstanceSpecLike, StaticSpec, resolve_specs
from hpscaler.fake.timers import Timers
from hpscaler.fake.world import World, instance_group, node_name

__all__ = [
    "INSUFFICIENT_CAPACITY",
    "CapacityChange",
    "FakeHyperPod",
    "FakeInterruptionQueue",
    "FakeKubernetes",
    "FakeLeases",
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
