"""What the HyperPod cluster must look like before hpscaler may act on it. Pure: no I/O.

Checked by `hpscaler run` at start-up (on the live DescribeCluster answer) and by `check-config`
when a DescribeCluster document is given; `plan` and `simulate` only warn. The rules come from the
HyperPod documentation (/work/shared/seed-examples/hyperpod-autoscaling.txt, hyperpod-spot.txt):

- continuous provisioning (`NodeProvisioningMode: Continuous`) is what BatchAddClusterNodes needs
  ("This API is only supported for clusters using Continuous as the NodeProvisioningMode");
- HyperPod's managed Karpenter (`AutoScaling.Mode: Enable`) would act on the same NodePools: two
  autoscalers would each add nodes for the same pending pods;
- the managed autoscaling prerequisites ask for `NodeRecovery: Automatic`;
- "if you set consolidateAfter: 0, then consolidation can happen immediately, giving very little
  time for graceful pod eviction. Set it to non zero upto 2 min";
- every instance group hpscaler launches into carries the start-up taint in its
  `KubernetesConfig.Taints` ("labels and taints to be applied to cluster nodes in an instance
  group", API_ClusterKubernetesConfig), so no pod lands on a node before hpscaler registered it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hpscaler.model import NodeClass, NodePool, Taint

STARTUP_TAINT = Taint("hpscaler.io/unregistered", "NoExecute")
"""Put on every managed group's nodes by HyperPod; hpscaler removes it once it registered the node."""

CONTINUOUS = "Continuous"
CONSOLIDATE_AFTER_ADVISED_SECONDS = 120.0
# The fields of ClusterInstanceGroupDetails that UpdateCluster's ClusterInstanceGroupSpecification
# takes back unchanged (UpdateCluster replaces a group's whole specification).
_SPEC_FIELDS = (
    "InstanceGroupName",
    "InstanceType",
    "LifeCycleConfig",
    "ExecutionRole",
    "ThreadsPerCore",
    "InstanceStorageConfigs",
    "OnStartDeepHealthChecks",
    "TrainingPlanArn",
    "OverrideVpcConfig",
    "ScheduledUpdateConfig",
    "AutoPatchConfig",
    "CapacityRequirements",
    "NetworkInterface",
)

Severity = Literal["error", "warning"]
Mode = Literal["run", "check", "offline"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One prerequisite not met: what, where, and the command (or edit) that fixes it."""

    severity: Severity
    subject: str  # "cluster my-cluster", "instance group g1", "NodePool default"
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.subject}: {self.message}\n  fix: {self.fix}"


def managed_groups(node_pools: Iterable[NodePool], node_classes: Iterable[NodeClass]) -> list[str]:
    """Instance groups hpscaler launches into: listed by a NodeClass that some NodePool uses."""
    classes = {c.name: c for c in node_classes}
    names: dict[str, None] = {}
    for pool in node_pools:
        node_class = classes.get(pool.node_class)
        if node_class is not None:
            names.update(dict.fromkeys(node_class.instance_groups))
    return list(names)


def _group_taints(group: Mapping[str, Any]) -> list[dict[str, Any]]:
    config = group.get("KubernetesConfig") or {}
    for key in ("Taints", "DesiredTaints", "CurrentTaints"):
        taints = config.get(key)
        if taints is not None:
            return [dict(t) for t in taints if isinstance(t, Mapping)]
    return []


def _group_labels(group: Mapping[str, Any]) -> dict[str, Any]:
    config = group.get("KubernetesConfig") or {}
    for key in ("Labels", "DesiredLabels", "CurrentLabels"):
        labels = config.get(key)
        if labels is not None:
            return dict(labels)
    return {}


def has_startup_taint(group: Mapping[str, Any]) -> bool:
    """Whether a DescribeCluster instance group carries `STARTUP_TAINT` in its KubernetesConfig."""
    return any(
        t.get("Key") == STARTUP_TAINT.key and t.get("Effect") == STARTUP_TAINT.effect
        for t in _group_taints(group)
    )


def group_specification(group: Mapping[str, Any]) -> dict[str, Any]:
    """The UpdateCluster specification that keeps a described group as it is."""
    spec = {k: group[k] for k in _SPEC_FIELDS if group.get(k) not in (None, "", [], {})}
    spec["InstanceCount"] = int(group.get("TargetCount", group.get("CurrentCount", 0)) or 0)
    requirements = group.get("InstanceRequirements") or {}
    types = requirements.get("DesiredInstanceTypes") or requirements.get("CurrentInstanceTypes")
    if types and "InstanceType" not in spec:
        spec["InstanceRequirements"] = {"InstanceTypes": list(types)}
    if image := group.get("DesiredImageId") or group.get("CurrentImageId"):
        spec["ImageId"] = image
    spec.setdefault("ExecutionRole", f"<ExecutionRole of {group.get('InstanceGroupName')}>")  # required
    return spec


def remove_startup_taint_command(cluster: str, groups: Sequence[Mapping[str, Any]]) -> str:
    """`aws sagemaker update-cluster` that takes `STARTUP_TAINT` off `groups`, keeping the rest."""
    specs = []
    for group in groups:
        spec = group_specification(group)
        taints = [t for t in _group_taints(group) if t.get("Key") != STARTUP_TAINT.key]
        config: dict[str, Any] = {"Taints": taints}
        if labels := _group_labels(group):
            config["Labels"] = labels
        spec["KubernetesConfig"] = config
        specs.append(spec)
    body = json.dumps(specs, separators=(",", ":"), sort_keys=True)
    return f"{_update(cluster)} --instance-groups {shlex.quote(body)}"


def _update(cluster: str) -> str:
    return f"aws sagemaker update-cluster --cluster-name {shlex.quote(cluster)}"


def enable_continuous_command(cluster: str) -> str:
    """The command that turns on continuous provisioning."""
    return f"{_update(cluster)} --node-provisioning-mode Continuous"


def disable_autoscaling_command(cluster: str) -> str:
    """The command that turns HyperPod's managed Karpenter off."""
    body = shlex.quote(json.dumps({"Mode": "Disable"}))
    return f"{_update(cluster)} --auto-scaling {body}"


def node_recovery_command(cluster: str) -> str:
    """The command that makes HyperPod replace faulty nodes by itself."""
    return f"{_update(cluster)} --node-recovery Automatic"


def check_cluster(
    document: Mapping[str, Any],
    node_pools: Sequence[NodePool],
    node_classes: Sequence[NodeClass],
    *,
    mode: Mode,
) -> list[Finding]:
    """The prerequisites `document` (DescribeCluster output) does not meet.

    `mode` "run" and "check" make every unmet prerequisite an error (check-config answers for
    what `run` would do); "offline" (plan, simulate) turns them into warnings: nothing is launched.
    """
    name = str(document.get("ClusterName") or "<cluster>")
    subject = f"cluster {name}"
    strict: Severity = "warning" if mode == "offline" else "error"
    found: list[Finding] = []
    provisioning = document.get("NodeProvisioningMode")
    if provisioning != CONTINUOUS:
        stated = f"is {provisioning}" if provisioning else "is not stated (the default is not Continuous)"
        found.append(
            Finding(
                strict,
                subject,
                f"NodeProvisioningMode {stated}: BatchAddClusterNodes needs continuous provisioning",
                enable_continuous_command(name),
            )
        )
    autoscaling = document.get("AutoScaling") or {}
    if str(autoscaling.get("Mode", "")).lower() == "enable":
        found.append(
            Finding(
                strict,
                subject,
                "HyperPod's managed Karpenter autoscaling is enabled (AutoScaling.Mode: Enable): two "
                "autoscalers would add and remove nodes for the same NodePools. hpscaler does not act "
                "on such a cluster",
                disable_autoscaling_command(name),
            )
        )
    recovery = document.get("NodeRecovery")
    if recovery != "Automatic":
        found.append(
            Finding(
                "warning",
                subject,
                f"NodeRecovery is {recovery or 'not stated'}: faulty nodes are not replaced by HyperPod "
                "(the autoscaling prerequisites ask for Automatic)",
                node_recovery_command(name),
            )
        )
    groups = {str(g.get("InstanceGroupName")): g for g in document.get("InstanceGroups") or []}
    # HyperPod reconciles a group's KubernetesConfig taints onto its nodes (API reference,
    # ClusterKubernetesConfigNodeDetails), so a taint there cannot be removed node by node: an
    # "unregistered" taint would stay on every node and keep all pods off them.
    managed = [groups[g] for g in managed_groups(node_pools, node_classes) if g in groups]
    for group in (g for g in managed if has_startup_taint(g)):
        found.append(
            Finding(
                "warning" if mode == "offline" else "error",
                f"instance group {group.get('InstanceGroupName')}",
                f"KubernetesConfig.Taints carries {STARTUP_TAINT.key}:{STARTUP_TAINT.effect}; HyperPod "
                "keeps group taints on every node, so no pod would ever land there (hpscaler registers "
                "nodes without it: see the README's Node registration)",
                remove_startup_taint_command(name, [group]),
            )
        )
    return found


def check_node_pools(node_pools: Iterable[NodePool]) -> list[Finding]:
    """NodePool settings the HyperPod documentation warns about."""
    found = []
    for pool in node_pools:
        after = pool.disruption.consolidate_after_seconds
        if after is not None and after <= 0:
            found.append(
                Finding(
                    "warning",
                    f"NodePool {pool.name}",
                    "consolidateAfter: 0 lets consolidation remove a node the moment it is "
                    "underutilized, giving very little time for graceful pod eviction",
                    "set spec.disruption.consolidateAfter to a non-zero value up to 2m, so pods "
                    "have time to checkpoint",
                )
            )
    return found


def errors(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that stop `run` (and fail check-config)."""
    return [f for f in findings if f.severity == "error"]
