"""hpscaler's own configuration: the `HpscalerConfig` document and the frozen `Settings` it yields.

Every field has a default, Karpenter's where Karpenter has the same knob, so `Settings()` is a
working offline configuration and a document only lists what it changes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from hpscaler.catalogue import PriceOverride

HPSCALER_API_VERSION = "hpscaler.io/v1alpha1"
HPSCALER_KIND = "HpscalerConfig"
# EC2 Spot placement scores run from 1 (unlikely to succeed) to 10 (highly likely).
MIN_PLACEMENT_SCORE = 1
MAX_PLACEMENT_SCORE = 10

_Seconds = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    """camelCase in documents, snake_case in code; unknown keys rejected; immutable once loaded."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class Backends(_Section):
    """Which implementation talks to Kubernetes and to AWS: "fake", "kubernetes"/"aws", or a plugin name."""

    kubernetes: str = Field(default="kubernetes", min_length=1)
    aws: str = Field(default="aws", min_length=1)
    scores: str = ""  # Spot placement scores; empty: the `aws` backend's
    # Settings for plugin backends, by backend name (each plugin documents its own keys).
    options: dict[str, dict[str, Any]] = {}


class Aws(_Section):
    """How the AWS backend reaches SageMaker, EC2 and SQS (credentials come from the standard chain)."""

    profile: str = ""
    endpoint_url: str = ""  # one endpoint for every service (tests, LocalStack-style proxies)
    sagemaker_endpoint_url: str = ""
    ec2_endpoint_url: str = ""
    sqs_endpoint_url: str = ""
    interruption_queue_url: str = ""  # EventBridge -> SQS queue; empty disables the queue
    placement_score_refresh_seconds: _Seconds = 600.0
    max_attempts: int = Field(default=5, ge=1, le=20)


class Kubernetes(_Section):
    """How the Kubernetes backend reaches the API server."""

    kubeconfig: str = ""  # empty: in-cluster config when running in a pod, else ~/.kube/config
    context: str = ""
    namespace: str = "kube-system"  # where Events, the leader Lease and custom resources live
    lease_name: str = "hpscaler-leader"
    lease_seconds: _Seconds = 15.0
    renew_seconds: _Seconds = 10.0
    read_custom_resources: bool = True  # NodePools and HyperpodNodeClasses from the cluster when present


class Batching(_Section):
    """Pending-pod batching window (Karpenter's BATCH_IDLE_DURATION / BATCH_MAX_DURATION)."""

    idle_seconds: _Seconds = 1.0
    max_seconds: _Seconds = 10.0

    @model_validator(mode="after")
    def _idle_within_max(self) -> Self:
        if self.idle_seconds > self.max_seconds:
            raise ValueError(
                f"idleSeconds ({self.idle_seconds:g}) must not exceed maxSeconds ({self.max_seconds:g})"
            )
        return self


class PriceSpec(_Section):
    """$/hour for one instance type, replacing the catalogue's price (e.g. a negotiated rate)."""

    on_demand: float | None = Field(default=None, ge=0)
    spot: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _at_least_one(self) -> Self:
        if self.on_demand is None and self.spot is None:
            raise ValueError("give onDemand, spot or both")
        return self


class Provisioning(_Section):
    """BatchAddClusterNodes chunking and node lifecycle timeouts."""

    # BatchAddClusterNodes accepts at most 50 nodes and 5 instance groups per request.
    max_nodes_per_call: int = Field(default=50, ge=1, le=50)
    max_groups_per_call: int = Field(default=5, ge=1, le=5)
    # Longer than Karpenter's 5 min / 15 min: HyperPod runs lifecycle scripts before a node joins.
    launch_timeout_seconds: _Seconds = 600.0
    registration_timeout_seconds: _Seconds = 1200.0


class OutOfCapacityBackoff(_Section):
    """How long an instance group stays out of the running after an insufficient-capacity failure."""

    initial_seconds: _Seconds = 180.0
    max_seconds: _Seconds = 1800.0
    multiplier: float = Field(default=2.0, ge=1.0)

    @model_validator(mode="after")
    def _initial_within_max(self) -> Self:
        if self.initial_seconds > self.max_seconds:
            raise ValueError(
                f"initialSeconds ({self.initial_seconds:g}) must not exceed maxSeconds ({self.max_seconds:g})"
            )
        return self


class Interruption(_Section):
    """Spot interruption handling and the signal sources besides the queue."""

    rebalance_as_warning: bool = False
    checkpoint_acknowledgement: bool = True
    # Kept below the 2-minute Spot notice so a checkpoint acknowledgement still leaves time to evict.
    safety_margin_seconds: float = Field(default=10.0, ge=0, lt=120)
    # A managed node carrying one of these taint keys has a Spot notice. HyperPod's Spot page says it
    # taints the node but names no key: add the key you see on an interrupted node. The defaults are
    # aws-node-termination-handler's (pkg/node/node.go), for clusters that also run it.
    taint_keys: tuple[str, ...] = (
        "aws-node-termination-handler/spot-itn",
        "aws-node-termination-handler/scheduled-maintenance",
    )
    # The `hpscaler agent` DaemonSet runs on the nodes (deploy/kubernetes/agent.yaml).
    node_agent: bool = False
    # ListClusterEvents polling: needs no set-up; 0 turns it off.
    cluster_events_seconds: float = Field(default=60.0, ge=0)


class Consolidation(_Section):
    """Consolidation loop (Karpenter polls every 10s and re-validates a command after 15s)."""

    enabled: bool = True
    poll_seconds: _Seconds = 10.0
    validation_seconds: float = Field(default=15.0, ge=0)


class Logging(_Section):
    """Log level and format; "auto" is console on a terminal and JSON otherwise."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Health(_Section):
    """Health/metrics HTTP endpoint."""

    bind: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8080, ge=0, le=65535)


class Settings(_Section):
    """HpscalerConfig `spec`: everything the daemon and the offline commands are tuned with."""

    cluster_name: str = ""
    region: str = ""
    backends: Backends = Backends()
    aws: Aws = Aws()
    kubernetes: Kubernetes = Kubernetes()
    batching: Batching = Batching()
    prices: dict[str, PriceSpec] = {}
    # Static Spot placement scores by zone name or zone id, used offline and when the SPS API fails.
    placement_scores: dict[str, Annotated[int, Field(ge=MIN_PLACEMENT_SCORE, le=MAX_PLACEMENT_SCORE)]] = {}
    # Offline only: instance groups `plan` treats as out of capacity.
    out_of_capacity: tuple[str, ...] = ()
    provisioning: Provisioning = Provisioning()
    out_of_capacity_backoff: OutOfCapacityBackoff = OutOfCapacityBackoff()
    interruption: Interruption = Interruption()
    consolidation: Consolidation = Consolidation()
    logging: Logging = Logging()
    health: Health = Health()
    shutdown_seconds: _Seconds = 30.0  # SIGTERM: how long in-progress calls may take to finish
    state_path: str = ""  # where backoffs and nodes going away persist across restarts; empty: not kept

    def price_overrides(self) -> dict[str, PriceOverride]:
        """`prices` in the form `Catalogue.with_prices` takes."""
        return {name: PriceOverride(p.on_demand, p.spot) for name, p in self.prices.items()}


class ConfigMeta(_Section):
    """HpscalerConfig `metadata`; only the name matters."""

    name: str = "default"
    namespace: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class HpscalerConfigDocument(_Section):
    """The `hpscaler.io/v1alpha1` HpscalerConfig document."""

    api_version: Literal["hpscaler.io/v1alpha1"]
    kind: Literal["HpscalerConfig"]
    metadata: ConfigMeta = ConfigMeta()
    spec: Settings = Settings()
    status: Any = None
