"""The pure registration decision: what a joining node must get, and which node a launch became."""

from __future__ import annotations

from hpscaler.backends.types import HyperPodNode, NodeStatus
from hpscaler.catalogue import load_catalogue
from hpscaler.model import (
    LABEL_CAPACITY_TYPE,
    LABEL_INSTANCE_GROUP,
    LABEL_INSTANCE_TYPE,
    LABEL_NODEPOOL,
    LABEL_REGISTERED,
    LABEL_ZONE,
    LABEL_ZONE_ID,
    CapacityType,
    InstanceGroup,
    Node,
    NodePool,
    Pod,
    Requirement,
    Taint,
)
from hpscaler.provisioning.registration import is_registered, match_nodes, registration

GROUP = InstanceGroup(
    "spot-az1",
    ("ml.g5.xlarge",),
    CapacityType.SPOT,
    ("us-west-2a",),
    zone_ids=("usw2-az2",),
    labels=(("hyperpod", "yes"),),
    taints=(Taint("group", "NoSchedule"),),
)
POOL = NodePool(
    "ml",
    "nc",
    requirements=(Requirement("tier", "In", ("gold",)), Requirement("size", "In", ("s", "m"))),
    labels=(("team", "ml"),),
    taints=(Taint("nvidia.com/gpu", "NoSchedule", "true"),),
    startup_taints=(Taint("agent", "NoExecute"),),
)
SPEC_LABELS = load_catalogue().get("ml.g5.xlarge").labels()


def joined(name: str = "hyperpod-i-0abc", **labels: str) -> Node:
    """A node as HyperPod registers it."""
    base = {
        LABEL_INSTANCE_TYPE: "ml.g5.xlarge",
        LABEL_ZONE: "us-west-2a",
        LABEL_INSTANCE_GROUP: "spot-az1",
        "hyperpod": "yes",
    }
    return Node(
        name,
        {**base, **labels},
        {"cpu": 3000},
        taints=GROUP.taints,
        ready=False,
        provider_id=f"aws:///usw2-az2/sagemaker/cluster/hyperpod-x-{name.removeprefix('hyperpod-')}",
    )


def test_registration_adds_exactly_what_the_plan_assumed() -> None:
    patch = registration(joined(), POOL, GROUP, SPEC_LABELS, "us-west-2")
    assert patch.node_pool == "ml"
    assert patch.labels == {
        **{k: v for k, v in SPEC_LABELS.items() if k != LABEL_INSTANCE_TYPE},
        "team": "ml",
        "tier": "gold",  # a requirement with one value pins the label, as in Karpenter
        LABEL_NODEPOOL: "ml",
        LABEL_CAPACITY_TYPE: "spot",
        LABEL_ZONE_ID: "usw2-az2",
        "topology.kubernetes.io/region": "us-west-2",
        LABEL_REGISTERED: "true",
    }
    assert "size" not in patch.labels  # two values: the node does not pick one
    # NodePool taints and startup taints; the group's own taint is HyperPod's and already there.
    assert patch.taints == (Taint("nvidia.com/gpu", "NoSchedule", "true"), Taint("agent", "NoExecute"))


def test_nothing_already_there_is_patched_again() -> None:
    first = registration(joined(), POOL, GROUP, SPEC_LABELS, "us-west-2")
    node = joined(**first.labels)
    node.taints = (*node.taints, *first.taints)
    again = registration(node, POOL, GROUP, SPEC_LABELS, "us-west-2")
    assert again.labels == {} and again.taints == ()
    assert is_registered(node) and not is_registered(joined())


def test_a_node_already_running_pods_gets_no_evicting_taint() -> None:
    running = Pod("default", "p", {"cpu": 1}, node_name="hyperpod-i-0abc", phase="Running")
    daemon = Pod("kube-system", "d", {"cpu": 1}, owner_kind="DaemonSet", node_name="hyperpod-i-0abc")
    patch = registration(joined(), POOL, GROUP, SPEC_LABELS, "us-west-2", [running, daemon])
    assert patch.taints == (Taint("nvidia.com/gpu", "NoSchedule", "true"),)
    patch = registration(joined(), POOL, GROUP, SPEC_LABELS, "us-west-2", [daemon])
    assert Taint("agent", "NoExecute") in patch.taints


def launched(logical: str, instance: str, group: str = "spot-az1") -> HyperPodNode:
    return HyperPodNode(
        logical, group, NodeStatus.RUNNING, instance, "ml.g5.xlarge", "us-west-2a", CapacityType.SPOT
    )


def test_nodes_are_found_by_provider_id_name_or_instance_group() -> None:
    by_provider = joined("ip-10-1-2-3")
    by_provider.provider_id = "aws:///us-west-2a/i-0aaa"
    by_name = joined("hyperpod-i-0bbb")
    by_name.provider_id = ""
    by_group = joined("mystery", **{LABEL_INSTANCE_GROUP: "other"})
    by_group.provider_id = ""
    wrong_group = joined("hyperpod-i-0ddd", **{LABEL_INSTANCE_GROUP: "elsewhere"})
    nodes = [by_provider, by_name, by_group, wrong_group]
    found = match_nodes(
        [
            launched("a", "i-0aaa"),
            launched("b", "i-0bbb"),
            launched("c", "i-0ccc", group="other"),
            launched("d", "i-0ddd"),
        ],
        nodes,
    )
    assert {lid: n.name for lid, n in found.items()} == {
        "a": "ip-10-1-2-3",
        "b": "hyperpod-i-0bbb",
        "c": "mystery",
    }


def test_a_group_match_needs_exactly_one_candidate() -> None:
    one, two = joined("x"), joined("y")
    one.provider_id = two.provider_id = ""
    assert match_nodes([launched("a", "i-0aaa"), launched("b", "i-0bbb")], [one, two]) == {}
    assert match_nodes([launched("a", "i-0aaa")], [one, two]) == {}


def test_the_value_the_plan_chose_for_an_open_key_is_put_on() -> None:
    planned = {"size": "m", LABEL_ZONE: "us-west-2z", "kubernetes.io/hostname": "planned-name"}
    patch = registration(joined(), POOL, GROUP, SPEC_LABELS, "us-west-2", planned=planned)
    assert patch.labels["size"] == "m"
    # What HyperPod put on the node about itself stands.
    assert LABEL_ZONE not in patch.labels and "kubernetes.io/hostname" not in patch.labels
