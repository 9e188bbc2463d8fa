"""The end-to-end world: moto (SageMaker, EC2, SQS) and the fake API server, and the test playing
HyperPod's node agent, the kubelet, kube-scheduler and the workload controllers around the daemon.

The daemon under test sees only its configuration file: a kubeconfig naming the fake API server and
an endpoint URL naming moto, with fake credentials from the environment, as in production.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import moto_ext
import yaml
from aws_harness import CLUSTER, REGION, Admin, make_world
from botocore.session import get_session
from botocore.validate import validate_parameters

from hpscaler.backends.registry import open_backends
from hpscaler.catalogue import load_catalogue
from hpscaler.config import load_config
from hpscaler.daemon.app import Daemon
from hpscaler.service.run import BackendOpener, Service
from hpscaler.testing import FakeApiServer

SPOT_GROUP = "spot-a"
ON_DEMAND_GROUP = "ondemand-a"
INSTANCE_TYPE = "ml.c5.xlarge"  # 3920m CPU allocatable: two 1500m pods per node
ZONE = f"{REGION}a"
QUEUE = "hpscaler-interruptions"
NAMESPACE = "default"
SHUTDOWN_SECONDS = 5.0
INTERRUPTED_TAINT = "hpscaler.io/interrupted"

T = TypeVar("T")


# --- polling --------------------------------------------------------------------------------------


async def eventually(probe: Callable[[], T | None], seconds: float = 30.0, what: str = "the condition") -> T:
    """Poll `probe` until it returns something truthy (returned); fail after `seconds`."""
    with anyio.move_on_after(seconds):
        while True:
            found = probe()
            if found:
                return found
            await anyio.sleep(0.02)
    raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")


# --- AWS ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cloud:
    """What the test built on moto."""

    endpoint: str
    queue_url: str
    zone_id: str  # of us-west-2a
    zone_ids: dict[str, str] = field(default_factory=dict)  # zone name -> zone id


DEFAULT_GROUPS: tuple[dict[str, Any], ...] = (
    {"Name": SPOT_GROUP, "Zones": "a", "Capacity": "Spot", "InstanceType": INSTANCE_TYPE},
    {"Name": ON_DEMAND_GROUP, "Zones": "a", "Capacity": "OnDemand", "InstanceType": INSTANCE_TYPE},
)


async def build_cloud(
    admin: Admin, endpoint: str, groups: Sequence[dict[str, Any]] = DEFAULT_GROUPS
) -> Cloud:
    """A cluster with subnets in us-west-2a and b, `groups` (by default a Spot and an On-Demand group
    of ml.c5.xlarge in us-west-2a; see `aws_harness.make_world`), and the queue."""
    world = await make_world(admin, list(groups), zones=("a", "b"))
    zone_id = world.zone_ids[ZONE]
    moto_ext.set_placement_scores(REGION, {zone_id: 9})
    queue_url = (await admin.sqs.create_queue(QueueName=QUEUE))["QueueUrl"]
    return Cloud(endpoint, queue_url, zone_id, dict(world.zone_ids))


# A launch failure message HyperPod reports for lack of capacity (InstanceStatus.Message).
CAPACITY = "InsufficientInstanceCapacity: We currently do not have sufficient ml.c5.xlarge capacity"


def set_status(logical_ids: Iterable[str], status: str, message: str = "") -> None:
    """HyperPod moves these nodes to `status` (ClusterInstanceStatus), saying why in `message`."""
    for logical_id in logical_ids:
        moto_ext.set_node_status(REGION, CLUSTER, logical_id, status, message)


def deletes() -> list[moto_ext.AwsRequest]:
    """The BatchDeleteClusterNodes requests moto received, oldest first."""
    return moto_ext.requests("BatchDeleteClusterNodes")


def validate_request(request: moto_ext.AwsRequest) -> None:
    """Raise ParamValidationError unless the request is valid for botocore's service model."""
    model = get_session().get_service_model(request.service)
    validate_parameters(request.params, model.operation_model(request.operation).input_shape)


def batch_adds() -> list[moto_ext.AwsRequest]:
    """The BatchAddClusterNodes requests moto received, oldest first."""
    return moto_ext.requests("BatchAddClusterNodes")


def check_batch_add(request: moto_ext.AwsRequest) -> dict[str, int]:
    """Assert one BatchAddClusterNodes is what HyperPod accepts; nodes asked for per group."""
    validate_request(request)
    params = request.params
    assert params["ClusterName"] == CLUSTER
    assert params.get("ClientToken"), "a BatchAddClusterNodes without ClientToken could add nodes twice"
    entries = params["NodesToAdd"]
    assert 1 <= len(entries) <= 5
    assert sum(e["IncrementTargetCountBy"] for e in entries) <= 50
    return {e["InstanceGroupName"]: e["IncrementTargetCountBy"] for e in entries}


def eventbridge(detail_type: str, source: str, resource: str, detail: dict[str, Any]) -> str:
    """An EventBridge event as SQS delivers it to the interruption queue."""
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": moto_ext.ACCOUNT,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [resource],
            "detail": detail,
        }
    )


def spot_warning(instance_id: str) -> str:
    """The EventBridge "EC2 Spot Instance Interruption Warning" event, as SQS delivers it."""
    return eventbridge(
        "EC2 Spot Instance Interruption Warning",
        "aws.ec2",
        f"arn:aws:ec2:{ZONE}:instance/{instance_id}",
        {"instance-id": instance_id, "instance-action": "terminate"},
    )


def cluster_state_change() -> str:
    """HyperPod's "SageMaker HyperPod Cluster State Change" EventBridge event, as SQS delivers it."""
    return eventbridge(
        "SageMaker HyperPod Cluster State Change",
        "aws.sagemaker",
        moto_ext.sagemaker_cluster(REGION, CLUSTER).arn,
        {"ClusterName": CLUSTER, "ClusterStatus": "InService"},
    )


# --- configuration --------------------------------------------------------------------------------


def write_kubeconfig(path: Path, server: FakeApiServer) -> Path:
    """A kubeconfig whose current context is the fake API server."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
                "users": [{"name": "hpscaler", "user": {"token": "e2e-token"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "hpscaler"}}],
                "current-context": "fake",
            }
        )
    )
    return path


@dataclass(frozen=True)
class Setup:
    """What a test changes in the configuration `write_config` writes (the defaults: one NodePool
    `default` labelled `tier: web` over the Spot and On-Demand groups, consolidation off)."""

    groups: tuple[str, ...] = (SPOT_GROUP, ON_DEMAND_GROUP)  # the HyperpodNodeClass's, in order
    requirements: tuple[dict[str, Any], ...] = (
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]},
    )
    labels: Mapping[str, str] = field(default_factory=lambda: {"tier": "web"})
    taints: tuple[dict[str, str], ...] = ()
    startup_taints: tuple[dict[str, str], ...] = ()
    disruption: Mapping[str, Any] = field(default_factory=dict)  # the NodePool's spec.disruption
    limits: Mapping[str, str] = field(default_factory=dict)  # the NodePool's spec.limits
    settings: Mapping[str, Any] = field(default_factory=dict)  # merged into HpscalerConfig.spec
    # Write DescribeCluster's document as cluster.json (`run` reads the live cluster either way; the
    # file's own checks refuse, e.g., a managed group spanning zones, which a live cluster may have).
    cluster_file: bool = True


async def write_config(
    directory: Path, admin: Admin, cloud: Cloud, server: FakeApiServer, setup: Setup | None = None
) -> Path:
    """The configuration directory `hpscaler run --config` gets, as a user would write it.

    The cluster document is DescribeCluster's output with DescribeSubnets' `Subnets`, asked of moto
    the way the README tells users to ask AWS.
    """
    cluster = await admin.sagemaker.describe_cluster(ClusterName=CLUSTER)
    cluster.pop("ResponseMetadata", None)
    subnet_ids = sorted(
        {s for g in cluster["InstanceGroups"] for s in (g.get("OverrideVpcConfig") or {}).get("Subnets", [])}
        | set(cluster["VpcConfig"]["Subnets"])
    )
    subnets = (await admin.ec2.describe_subnets(SubnetIds=subnet_ids))["Subnets"]
    cluster["Subnets"] = [
        {k: s[k] for k in ("SubnetId", "AvailabilityZone", "AvailabilityZoneId")} for s in subnets
    ]
    return _write_config(directory, cluster, cloud, server, setup or Setup())


def _write_config(
    directory: Path, cluster: dict[str, Any], cloud: Cloud, server: FakeApiServer, setup: Setup
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig = write_kubeconfig(directory.parent / f"{directory.name}-kubeconfig", server)
    if setup.cluster_file:
        (directory / "cluster.json").write_text(json.dumps(cluster, default=str, indent=1))
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "hpscaler.io/v1alpha1",
            "kind": "HpscalerConfig",
            "metadata": {"name": "e2e"},
            "spec": {
                "clusterName": CLUSTER,
                "region": REGION,
                "backends": {"kubernetes": "kubernetes", "aws": "aws"},
                "aws": {
                    "endpointUrl": cloud.endpoint,
                    "interruptionQueueUrl": cloud.queue_url,
                    "maxAttempts": 3,
                },
                "kubernetes": {"kubeconfig": str(kubeconfig), "leaseSeconds": 15, "renewSeconds": 5},
                "batching": {"idleSeconds": 0.2, "maxSeconds": 1.0},
                # Nothing here may move pods but the interruption under test.
                "consolidation": {"enabled": False},
                "health": {"bind": "127.0.0.1", "port": 0},
                "logging": {"level": "info", "format": "json"},
                "shutdownSeconds": SHUTDOWN_SECONDS,
                **setup.settings,
            },
        },
        {
            "apiVersion": "karpenter.sagemaker.amazonaws.com/v1",
            "kind": "HyperpodNodeClass",
            "metadata": {"name": "c5"},
            "spec": {"instanceGroups": list(setup.groups)},
        },
        {
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodePool",
            "metadata": {"name": "default"},
            "spec": {
                "template": {
                    "metadata": {"labels": dict(setup.labels)},
                    "spec": {
                        "nodeClassRef": {
                            "group": "karpenter.sagemaker.amazonaws.com",
                            "kind": "HyperpodNodeClass",
                            "name": "c5",
                        },
                        "requirements": [dict(r) for r in setup.requirements],
                        **({"taints": [dict(t) for t in setup.taints]} if setup.taints else {}),
                        **(
                            {"startupTaints": [dict(t) for t in setup.startup_taints]}
                            if setup.startup_taints
                            else {}
                        ),
                    },
                },
                **({"disruption": dict(setup.disruption)} if setup.disruption else {}),
                **({"limits": dict(setup.limits)} if setup.limits else {}),
            },
        },
    ]
    (directory / "hpscaler.yaml").write_text(yaml.safe_dump_all(documents))
    # The test's own mistakes fail here, not inside the daemon.
    load_config(directory, require_instance_groups=setup.cluster_file)
    return directory


# --- Kubernetes: the test as kubelet, kube-scheduler and controllers ------------------------------


def web_pod(name: str, *, node: str = "", **spec_fields: Any) -> dict[str, Any]:
    """A web replica (1500m CPU) owned by a ReplicaSet; Running on `node` if given, else pending.

    `spec_fields` replace fields of the pod spec (nodeSelector, tolerations, topologySpreadConstraints).
    """
    spec: dict[str, Any] = {
        "containers": [
            {"name": "web", "image": "nginx", "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}}}
        ],
        "terminationGracePeriodSeconds": 30,
        # The NodePool's template label: no node has it until hpscaler registers the node.
        "nodeSelector": {"tier": "web"},
        **spec_fields,
    }
    status: dict[str, Any] = {"phase": "Pending"}
    if node:
        spec["nodeName"] = node
        status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    else:
        status["conditions"] = [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no nodes"}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app": "web"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-5d4f",
                    "uid": "0b6c1a52-0000-4000-8000-000000000001",
                    "controller": True,
                }
            ],
        },
        "spec": spec,
        "status": status,
    }


def node_name(instance_id: str) -> str:
    """The Node name HyperPod gives an instance."""
    return f"hyperpod-{instance_id}"


def eks_provider_id(node: moto_ext.NodeFacts) -> str:
    """The providerID an EC2 instance's kubelet registers with on EKS."""
    return f"aws:///{node.zone}/{node.instance_id}"


def hyperpod_provider_id(node: moto_ext.NodeFacts) -> str:
    """The providerID of a HyperPod node as seen on live clusters:
    aws:///<zone id>/sagemaker/cluster/hyperpod-<cluster id>-<instance id>."""
    cluster_id = moto_ext.sagemaker_cluster(REGION, CLUSTER).arn.rsplit("/", 1)[-1]
    return f"aws:///{node.zone_id}/sagemaker/cluster/hyperpod-{cluster_id}-{node.instance_id}"


NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
REGISTERED = "karpenter.sh/registered"


def join(
    server: FakeApiServer,
    node: moto_ext.NodeFacts,
    provider_id: Callable[[moto_ext.NodeFacts], str] = eks_provider_id,
    name: str = "",
) -> str:
    """HyperPod finishes the launch and the kubelet registers the Node (`name`, by default HyperPod's
    `hyperpod-<instance id>`); its name.

    The Node carries only what HyperPod puts on it (instance type, zone, hostname, instance group,
    and its group's KubernetesConfig labels and taints), nothing of Karpenter's, and the kubelet
    registers it NotReady with the `node.kubernetes.io/not-ready` taint. `ready` finishes the join.
    """
    moto_ext.set_node_status(REGION, CLUSTER, node.logical_id, "Running")
    spec = load_catalogue().get(node.instance_type)
    assert spec is not None
    allocatable = spec.allocatable()
    name = name or node_name(node.instance_id)
    group_labels, group_taints = moto_ext.group_kubernetes_config(REGION, CLUSTER, node.group)
    taints = [{k.lower(): v for k, v in t.items()} for t in group_taints]
    server.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    **group_labels,
                    "node.kubernetes.io/instance-type": node.instance_type,
                    "kubernetes.io/hostname": name,
                    "topology.kubernetes.io/zone": node.zone,
                    "sagemaker.amazonaws.com/instance-group-name": node.group,
                },
            },
            "spec": {"providerID": provider_id(node), "taints": [*taints, NOT_READY]},
            "status": {
                "allocatable": {
                    "cpu": f"{allocatable['cpu']}m",
                    "memory": str(allocatable["memory"]),
                    "pods": str(allocatable["pods"]),
                },
                "conditions": [{"type": "Ready", "status": "False"}],
            },
        }
    )
    return name


async def joined_before(admin: Admin, server: FakeApiServer, group: str) -> tuple[moto_ext.NodeFacts, str]:
    """A node of `group` that HyperPod added and that joined, Ready, before hpscaler ran (no patch of
    hpscaler's on it); what HyperPod knows of it and its Node name."""
    await admin.sagemaker.batch_add_cluster_nodes(
        ClusterName=CLUSTER, NodesToAdd=[{"InstanceGroupName": group, "IncrementTargetCountBy": 1}]
    )
    node = moto_ext.cluster_nodes(REGION, CLUSTER)[-1]
    name = join(server, node)
    server.patch(
        "nodes",
        name,
        {"spec": {"taints": None}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
    )
    return node, name


async def ready(server: FakeApiServer, name: str) -> dict[str, Any]:
    """Wait until hpscaler registered the Node, then the kubelet reports Ready and the node
    lifecycle controller lifts the not-ready taint; the Node as registered."""
    node = await eventually(
        lambda: (n := server.get("nodes", name)) is not None and REGISTERED in n["metadata"]["labels"] and n,
        what=f"the registration of {name}",
    )
    taints = [t for t in node["spec"].get("taints", []) if t["key"] != NOT_READY["key"]]
    server.patch(
        "nodes",
        name,
        {"spec": {"taints": taints or None}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
    )
    return node


def bind(server: FakeApiServer, pod: str, node: str) -> None:
    """kube-scheduler binds the pod and the kubelet starts it."""
    server.patch(
        "pods",
        pod,
        {
            "spec": {"nodeName": node},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        },
        NAMESPACE,
    )


def pods(server: FakeApiServer) -> dict[str, dict[str, Any]]:
    """The web pods by name."""
    return {p["metadata"]["name"]: p for p in server.list("pods", NAMESPACE, label_selector="app=web")}


def nominated(server: FakeApiServer) -> dict[str, str]:
    """Pod name -> message of the `Nominated` Events hpscaler recorded."""
    return {
        e["involvedObject"]["name"]: e["message"]
        for e in server.list("events", NAMESPACE)
        if e.get("reason") == "Nominated"
    }


# --- the story every test starts with -----------------------------------------------------------


WEB = [f"web-{i}" for i in range(4)]


async def scale_up(
    kube: FakeApiServer,
    service: Service,
    *,
    settle: bool = True,
    provider_id: Callable[[moto_ext.NodeFacts], str] = eks_provider_id,
) -> dict[str, list[str]]:
    """Pending pods -> one BatchAddClusterNodes -> nodes join -> pods bound; node -> its pods.

    With `settle`, a provisioning round then runs (the launch monitor's, run now instead of within
    its 10 s period), and it must find nothing to do.
    """
    request = await eventually(lambda: batch_adds()[:1], what="BatchAddClusterNodes")
    (add,) = request
    # Two 1500m pods fit an ml.c5.xlarge: four need two nodes, in the best (Spot) group.
    assert check_batch_add(add) == {SPOT_GROUP: 2}
    assert add.params["NodesToAdd"][0].get("AvailabilityZones", ["us-west-2a"]) == ["us-west-2a"]

    # hpscaler tells the pods where they are going before any node exists.
    messages = await eventually(lambda: len(nominated(kube)) == 4 and nominated(kube), what="Nominated")
    assert set(messages) == set(WEB)
    assert all(f"new ml.c5.xlarge node in {SPOT_GROUP}" in m for m in messages.values())

    launched = moto_ext.cluster_nodes(REGION, CLUSTER)
    assert [(n.group, n.status, n.capacity_type) for n in launched] == [(SPOT_GROUP, "Pending", "Spot")] * 2
    names = [join(kube, node, provider_id) for node in launched]
    for name in names:
        await ready(kube, name)
    placement = {names[0]: WEB[:2], names[1]: WEB[2:]}
    for node, members in placement.items():
        for pod in members:
            bind(kube, pod, node)

    daemon = await eventually(lambda: service.daemon, what="the daemon")
    ctx = daemon.ctx
    await eventually(
        lambda: (
            all(ctx.cache.nodes.get(n) and ctx.cache.nodes[n].ready for n in names)
            and all(ctx.cache.pods[f"{NAMESPACE}/{p}"].phase == "Running" for p in WEB)
        ),
        what="the daemon to see the nodes and the running pods",
    )
    if settle:
        plan = None
        for _ in range(10):  # a round that could not read HyperPod (flaky AWS) plans nothing: again
            plan = await daemon.provisioner.reconcile("e2e-settle")
            if plan is not None:
                break
        assert plan is not None and not plan.new_nodes and not plan.unschedulable
        assert ctx.inflight == {}  # both launches seen through to joined nodes
    return placement


# --- the daemon, in-process -----------------------------------------------------------------------


class ShiftedClock:
    """The wall clock, moved forward by the test: launch timeouts and hours of deep health checks
    pass at once, without sleeping. Installed as the daemon's clock (`daemon.ctx.clock`, which every
    decision reads); the service's leader lease keeps wall time, so leadership is not lost."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """Wall time plus what the test has advanced."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass for the daemon's decisions."""
        self.offset += seconds


async def round_of(daemon: Daemon) -> None:
    """One provisioning round that read HyperPod (listed its nodes over the wire), run now."""
    for _ in range(10):  # a round that could not read HyperPod plans nothing: again
        if await daemon.provisioner.reconcile("e2e") is not None:
            return
    raise AssertionError("no provisioning round could read HyperPod")


@contextlib.asynccontextmanager
async def running(
    config_path: Path, backends_opener: BackendOpener = open_backends
) -> AsyncIterator[Service]:
    """`hpscaler run --config PATH` in this event loop: what `run_service` does, without `anyio.run`.

    It is stopped the way a container runtime stops it, with SIGTERM to this process (handled by the
    service's own signal receiver), and must then finish within its shutdown timeout; an overrun is
    recorded instead of ending the test process.
    """
    config = load_config(config_path, require_instance_groups=False)  # as `hpscaler run` loads it
    catalogue = config.catalogue()
    overruns: list[int] = []
    service = Service(config_path, config, catalogue, backends_opener=backends_opener, exit=overruns.append)
    stopped = anyio.Event()

    async def serve() -> None:
        try:
            await service.serve()
        finally:
            stopped.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        with anyio.fail_after(15):
            await service.started.wait()  # serving: the SIGTERM handler is installed
        try:
            yield service
        finally:
            if not stopped.is_set():
                assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
                os.kill(os.getpid(), signal.SIGTERM)
                with anyio.fail_after(SHUTDOWN_SECONDS + 2):
                    await stopped.wait()
    assert overruns == [], "the graceful stop overran spec.shutdownSeconds"
