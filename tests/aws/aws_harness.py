"""Helpers of the AWS backend tests: constants, the call recorder, and world-building on moto."""

from __future__ import annotations

import contextlib
import copy
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import moto_ext
import pytest
from aiobotocore.session import AioSession, get_session
from moto.server import ThreadedMotoServer

from hpscaler.aws.retry import RetryPolicy

REGION = "us-west-2"
CLUSTER = "hp"
ROLE = "arn:aws:iam::123456789012:role/hyperpod"
FAST = RetryPolicy(max_attempts=3, multiplier=0.001, max_wait=0.005)
POLICY_PATH = Path(__file__).resolve().parents[2] / "deploy" / "iam-policy.json"
# Fake credentials through the standard chain (environment), and no real config files or IMDS.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_CONFIG_FILE": "/nonexistent/hpscaler-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/hpscaler-aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}
UNSET_AWS_ENV = ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION")


@contextlib.contextmanager
def fake_aws_environment() -> Iterator[None]:
    """`FAKE_AWS_ENV` in os.environ (and no profile or region from outside) while open."""
    patch = pytest.MonkeyPatch()
    for name, value in FAKE_AWS_ENV.items():
        patch.setenv(name, value)
    for name in UNSET_AWS_ENV:
        patch.delenv(name, raising=False)
    try:
        yield
    finally:
        patch.undo()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on a free local port, extended with `moto_ext`; yields its URL."""
    moto_ext.install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def reset_moto(url: str) -> None:
    """Wipe every backend of the server at `url` (and its request log)."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request) as response:
        assert response.status == 200


@dataclass
class Call:
    """One API call a backend client made (each retry attempt is a call)."""

    service: str
    operation: str
    params: dict[str, Any]
    model: Any  # botocore OperationModel


@dataclass
class Recorder:
    """Collects the calls of the clients it is registered on, via botocore's event system."""

    calls: list[Call] = field(default_factory=list)

    def record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        self.calls.append(Call(service, model.name, copy.deepcopy(params), model))

    def operations(self, name: str | None = None) -> list[Call]:
        """Calls of one operation (or all)."""
        return [c for c in self.calls if name is None or c.operation == name]


class RecordingSession:
    """One aiobotocore session for the whole test run (service models load once: the EC2 model
    alone takes a second), whose clients report every call to the current test's recorder.
    """

    def __init__(self) -> None:
        self.session: AioSession = get_session()
        self.current: Recorder | None = None
        self.session.register("before-parameter-build", self._record)

    def _record(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        if self.current is not None:
            self.current.record(params, model, **kwargs)


@dataclass
class Admin:
    """Plain clients for arranging the world; their calls are not the backend's."""

    sagemaker: Any
    ec2: Any
    sqs: Any


@dataclass
class World:
    """A VPC with one subnet per zone, and a HyperPod cluster."""

    subnets: dict[str, str]  # zone name -> subnet id
    zone_ids: dict[str, str]  # zone name -> zone id


async def make_world(
    admin: Admin, groups: list[dict[str, Any]], zones: tuple[str, ...] = ("a", "b", "c")
) -> World:
    """Subnets in us-west-2{zones} and a cluster whose default VPC config is the first subnet.

    A group dict may name `Zones` (letters) for its OverrideVpcConfig; `Count` is InstanceCount;
    `Labels` and `Taints` are its KubernetesConfig labels and taints (by default none).
    """
    vpc = (await admin.ec2.create_vpc(CidrBlock="10.0.0.0/16"))["Vpc"]["VpcId"]
    subnets: dict[str, str] = {}
    zone_ids: dict[str, str] = {}
    for index, letter in enumerate(zones):
        subnet = (
            await admin.ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.0.{index}.0/24", AvailabilityZone=f"{REGION}{letter}"
            )
        )["Subnet"]
        subnets[subnet["AvailabilityZone"]] = subnet["SubnetId"]
        zone_ids[subnet["AvailabilityZone"]] = subnet["AvailabilityZoneId"]
    specs = []
    for group in groups:
        spec: dict[str, Any] = {
            "InstanceGroupName": group["Name"],
            "InstanceType": group.get("InstanceType", "ml.c5.xlarge"),
            "InstanceCount": group.get("Count", 0),
            # moto needs ThreadsPerCore and an s3://sagemaker-... lifecycle location.
            "ThreadsPerCore": 1,
            "LifeCycleConfig": {"SourceS3Uri": "s3://sagemaker-lifecycle/", "OnCreate": "on_create.sh"},
            "ExecutionRole": ROLE,
        }
        if "Zones" in group:
            spec["OverrideVpcConfig"] = {
                "SecurityGroupIds": ["sg-12345678"],
                "Subnets": [subnets[f"{REGION}{z}"] for z in group["Zones"]],
            }
        if "Capacity" in group:
            spec["CapacityRequirements"] = {group["Capacity"]: {}}
        if "Taints" in group or "Labels" in group:
            spec["KubernetesConfig"] = {k: group[k] for k in ("Labels", "Taints") if k in group}
        specs.append(spec)
    await admin.sagemaker.create_cluster(
        ClusterName=CLUSTER,
        InstanceGroups=specs,
        VpcConfig={"SecurityGroupIds": ["sg-12345678"], "Subnets": [subnets[f"{REGION}{zones[0]}"]]},
        NodeRecovery="Automatic",
        NodeProvisioningMode="Continuous",
    )
    return World(subnets, zone_ids)


async def add_group(admin: Admin, name: str, subnet: str, capacity: str = "Spot") -> None:
    """UpdateCluster adding an empty ml.c5.xlarge group in `subnet`, as an operator would."""
    await admin.sagemaker.update_cluster(
        ClusterName=CLUSTER,
        InstanceGroups=[
            {
                "InstanceGroupName": name,
                "InstanceType": "ml.c5.xlarge",
                "InstanceCount": 0,
                "ThreadsPerCore": 1,
                "LifeCycleConfig": {"SourceS3Uri": "s3://sagemaker-lifecycle/", "OnCreate": "on_create.sh"},
                "ExecutionRole": ROLE,
                "CapacityRequirements": {capacity: {}},
                "OverrideVpcConfig": {"SecurityGroupIds": ["sg-12345678"], "Subnets": [subnet]},
            }
        ],
    )
