"""NodePools and HyperpodNodeClasses read from the fake API server, and their status written back."""

from __future__ import annotations

from typing import Any

from kube_harness import ManualClock

from hpscaler.backends.protocols import NodeConfigSource
from hpscaler.kube.backend import KubernetesBackend
from hpscaler.kube.resources import ClusterObject, Condition, merge_conditions, node_class_conditions
from hpscaler.model import CapacityType, InstanceGroup, NodeClass, Requirement
from hpscaler.testing import FakeApiServer

MERGE = "application/merge-patch+json"


def node_pool(name: str, node_class: str = "gpu", operator: str = "In") -> dict[str, Any]:
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "nodeClassRef": {
                        "group": "karpenter.sagemaker.amazonaws.com",
                        "kind": "HyperpodNodeClass",
                        "name": node_class,
                    },
                    "requirements": [
                        {
                            "key": "node.kubernetes.io/instance-type",
                            "operator": operator,
                            "values": ["ml.g5.xlarge"],
                        }
                    ],
                }
            },
            "disruption": {"consolidateAfter": "5m"},
        },
    }


def node_class(name: str, *groups: str) -> dict[str, Any]:
    return {
        "apiVersion": "karpenter.sagemaker.amazonaws.com/v1",
        "kind": "HyperpodNodeClass",
        "metadata": {"name": name},
        "spec": {"instanceGroups": list(groups)},
    }


def group(name: str, *zones: str, status: str = "InService") -> InstanceGroup:
    return InstanceGroup(name, ("ml.g5.xlarge",), CapacityType.ON_DEMAND, zones, status=status)


def conditions(server: FakeApiServer, resource: str, name: str) -> dict[str, dict[str, Any]]:
    obj = server.get(resource, name)
    assert obj is not None
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


async def test_missing_crds_mean_no_resources(server: FakeApiServer, backend: KubernetesBackend) -> None:
    server.uninstall("nodepools")
    server.uninstall("hyperpodnodeclasses")
    found = await backend.custom_resources.read()
    assert found.node_pools == () and found.node_classes == () and found.crds == frozenset()


async def test_read_converts_valid_objects_and_reports_invalid_ones(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    server.create(node_pool("good"))
    server.create(node_pool("broken", operator="Sometimes"))
    server.create(node_class("gpu", "g5-a", "g5-b"))
    found = await backend.custom_resources.read()
    assert found.crds == {"NodePool", "HyperpodNodeClass"}
    assert found.classes() == (NodeClass("gpu", ("g5-a", "g5-b")),)
    (pool,) = found.pools()
    assert pool.name == "good" and pool.node_class == "gpu"
    assert pool.requirements == (Requirement("node.kubernetes.io/instance-type", "In", ("ml.g5.xlarge",)),)
    assert pool.disruption.consolidate_after_seconds == 300
    broken = next(p for p in found.node_pools if p.name == "broken")
    assert broken.model is None and broken.errors
    assert "operator" in broken.errors[0].field and broken.generation == 1


async def test_status_conditions_are_written_with_merge_patch(
    server: FakeApiServer, backend: KubernetesBackend, clock: ManualClock
) -> None:
    server.create(node_pool("good"))
    server.create(node_pool("orphan", node_class="missing"))
    server.create(node_pool("broken", operator="Sometimes"))
    server.create(node_class("gpu", "g5-a", "g5-b"))
    resources = backend.custom_resources
    groups = {"g5-a": group("g5-a", "us-west-2a"), "g5-b": group("g5-b", "us-west-2b")}
    assert await resources.publish(await resources.read(), groups) == 4
    patches = server.requests_for("patch")
    assert {r.resource for r in patches} == {"nodepools/status", "hyperpodnodeclasses/status"}
    assert {r.content_type for r in patches} == {MERGE}
    gpu = conditions(server, "hyperpodnodeclasses", "gpu")
    assert {t: c["status"] for t, c in gpu.items()} == {
        "InstanceGroupReady": "True",
        "SubnetsReady": "True",
        "Ready": "True",
    }
    assert gpu["Ready"]["observedGeneration"] == 1
    good = conditions(server, "nodepools", "good")
    assert {t: c["status"] for t, c in good.items()} == {
        "ValidationSucceeded": "True",
        "NodeClassReady": "True",
        "Ready": "True",
    }
    orphan = conditions(server, "nodepools", "orphan")
    assert orphan["NodeClassReady"]["reason"] == "NodeClassNotFound" and orphan["Ready"]["status"] == "False"
    broken = conditions(server, "nodepools", "broken")
    assert (
        broken["ValidationSucceeded"]["status"] == "False"
        and "Sometimes" in broken["ValidationSucceeded"]["message"]
    )
    first_seen = gpu["Ready"]["lastTransitionTime"]

    # Nothing changed: no writes at all.
    server.clear_requests()
    clock.advance(3600)
    assert await resources.publish(await resources.read(), groups) == 0
    assert server.requests_for("patch") == []

    # A group disappears: the class and its pools flip, with new transition times.
    del groups["g5-b"]
    assert await resources.publish(await resources.read(), groups) == 2
    gpu = conditions(server, "hyperpodnodeclasses", "gpu")
    assert gpu["InstanceGroupReady"]["status"] == "False" and "g5-b" in gpu["InstanceGroupReady"]["message"]
    assert gpu["SubnetsReady"]["lastTransitionTime"] == first_seen  # unchanged status keeps its time
    assert gpu["Ready"]["lastTransitionTime"] > first_seen
    assert conditions(server, "nodepools", "good")["NodeClassReady"]["reason"] == "NodeClassNotReady"


async def test_the_backend_is_a_node_config_source_for_the_daemon(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    assert isinstance(backend, NodeConfigSource)
    assert await backend.publish_status(None) == 0  # nothing read yet: nothing to publish
    server.create(node_pool("good"))
    server.create(node_pool("broken", operator="Sometimes"))
    server.create(node_class("gpu", "g5-a"))
    found = await backend.node_config()
    assert found.present
    assert [p.name for p in found.node_pools] == ["good"]
    assert found.node_classes == (NodeClass("gpu", ("g5-a",)),)
    (invalid,) = found.invalid
    assert invalid.startswith("NodePool broken: ") and "Sometimes" in invalid
    assert await backend.publish_status({"g5-a": group("g5-a", "us-west-2a")}) == 3
    assert conditions(server, "nodepools", "good")["Ready"]["status"] == "True"
    server.uninstall("nodepools")
    server.uninstall("hyperpodnodeclasses")
    assert (await backend.node_config()).present is False


async def test_writing_keeps_foreign_conditions_and_tracks_generation(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    obj = node_class("gpu", "g5-a")
    obj["status"] = {"conditions": [{"type": "Drifted", "status": "False", "reason": "NotDrifted"}]}
    server.create(obj)
    server.patch("hyperpodnodeclasses", "gpu", {"spec": {"instanceGroups": ["g5-a", "g5-c"]}})
    written = await backend.custom_resources.write_conditions(
        "HyperpodNodeClass", "gpu", [Condition("Ready", "False", "InstanceGroupNotFound", "g5-c")]
    )
    assert written
    found = conditions(server, "hyperpodnodeclasses", "gpu")
    assert found["Drifted"] == {"type": "Drifted", "status": "False", "reason": "NotDrifted"}
    assert found["Ready"]["observedGeneration"] == 2


def test_conditions_with_unknown_groups_and_zones() -> None:
    obj = ClusterObject("HyperpodNodeClass", "gpu", 1, NodeClass("gpu", ("a", "b")))
    unknown = node_class_conditions(obj, None)
    assert [c.status for c in unknown] == ["Unknown", "Unknown", "Unknown"]
    spread = node_class_conditions(obj, {"a": group("a", "z1", "z2"), "b": group("b")})
    assert spread[1].reason == "SubnetsNotFound" and spread[2].status == "False"
    stopped = node_class_conditions(obj, {"a": group("a", "z1", status="Updating"), "b": group("b", "z2")})
    assert stopped[0].reason == "InstanceGroupNotInService"


def test_merge_conditions_keeps_order_and_times() -> None:
    current = [
        {"type": "Ready", "status": "True", "reason": "Ready", "lastTransitionTime": "2020-01-01T00:00:00Z"},
        {"type": "Other", "status": "True"},
    ]
    merged = merge_conditions(current, [Condition("Ready", "True", "Ready", "still")], 3, 1_800_000_000.0)
    assert merged[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z" and merged[0]["observedGeneration"] == 3
    assert merged[1] == {"type": "Other", "status": "True"}
    flipped = merge_conditions(current, [Condition("Ready", "False", "Broken")], 3, 1_800_000_000.0)
    assert flipped[0]["lastTransitionTime"] == "2027-01-15T08:00:00Z"


async def test_node_class_status_lists_each_groups_types_subnets_and_capacity(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    server.create(node_pool("good"))
    server.create(node_class("gpu", "spot1", "od", "not-yet"))
    spot = InstanceGroup(
        "spot1",
        ("ml.g5.xlarge",),
        CapacityType.SPOT,
        ("us-west-2a",),
        ("usw2-az2",),
        ("subnet-03ecc649db2ff20d2",),
        subnet_zones=(("subnet-03ecc649db2ff20d2", "us-west-2a", "usw2-az2"),),
    )
    await backend.node_config()

    await backend.publish_status({"spot1": spot, "od": group("od", "us-west-2b")})

    obj = server.get("hyperpodnodeclasses", "gpu")
    assert obj is not None
    # As the HyperPod Spot documentation shows HyperPod's own controller writing it.
    assert obj["status"]["instanceGroups"] == [
        {
            "name": "spot1",
            "instanceTypes": ["ml.g5.xlarge"],
            "subnets": [{"id": "subnet-03ecc649db2ff20d2", "zone": "us-west-2a", "zoneId": "usw2-az2"}],
            "capacities": {"Spot": {}},
        },
        {"name": "od", "instanceTypes": ["ml.g5.xlarge"], "subnets": [], "capacities": {"OnDemand": {}}},
    ]
    assert conditions(server, "hyperpodnodeclasses", "gpu")["InstanceGroupReady"]["status"] == "False"
    # Nothing changed: nothing is written again; a group's capacity listing follows the cluster.
    assert await backend.publish_status({"spot1": spot, "od": group("od", "us-west-2b")}) == 0
