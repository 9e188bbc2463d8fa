"""Instance groups from the live cluster: DescribeCluster (and DescribeSubnets for their zones).

`hpscaler run` reads the groups at start-up (`startup_cluster`), then every 5 minutes and whenever
something asks for it (`request_cluster_refresh`: a HyperPod cluster state-change event, for one).
A group added with UpdateCluster is planned with at once, and a NodeClass naming it takes effect
at the next NodePool sync; a group's status, zones and capacity type stay current. The
instance-groups file is then only for offline `plan` and `simulate`.

A failed DescribeCluster keeps the last groups: stale groups beat none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import anyio
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from hpscaler.backends.protocols import BackendError, HyperPodCluster
from hpscaler.backends.types import ClusterDescription
from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.events import CloudProviderError, ClusterRefreshed
from hpscaler.model import InstanceGroup
from hpscaler.prerequisites import Finding, check_cluster, check_node_pools, errors

CLUSTER_REFRESH_SECONDS = 300.0
STARTUP_ATTEMPTS = 6  # a cluster that cannot be read at start-up is retried for about half a minute
STARTUP_MAX_WAIT_SECONDS = 10.0

log = structlog.get_logger("hpscaler.cluster")


class PrerequisitesNotMet(Exception):
    """The cluster is not one hpscaler may act on (exit code 2); `findings` say why and how to fix it."""

    def __init__(self, cluster: str, findings: Sequence[Finding]) -> None:
        self.cluster = cluster
        self.findings = tuple(findings)
        super().__init__("\n".join(str(f) for f in self.findings))


def with_live_groups(config: LoadedConfig, groups: Sequence[InstanceGroup]) -> LoadedConfig:
    """The configuration with the cluster's groups in place of the file's."""
    return replace(config, instance_groups=tuple(groups))


def unknown_types(groups: Sequence[InstanceGroup], catalogue: Catalogue) -> dict[str, list[str]]:
    """Instance types of each group that the catalogue does not know (the scheduler skips them)."""
    found = {g.name: [t for t in g.instance_types if t not in catalogue] for g in groups}
    return {name: types for name, types in found.items() if types}


def group_changes(old: Sequence[InstanceGroup], new: Sequence[InstanceGroup]) -> dict[str, list[str]]:
    """Groups added, removed and changed (status, zones, subnets, types, capacity, taints, labels)."""
    before = {g.name: g for g in old}
    after = {g.name: g for g in new}

    def shape(g: InstanceGroup) -> tuple[object, ...]:
        return (g.status, g.zones, g.subnets, g.instance_types, g.capacity_type, g.taints, g.labels)

    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(n for n in set(after) & set(before) if shape(after[n]) != shape(before[n])),
    }


async def startup_cluster(hyperpod: HyperPodCluster, config: LoadedConfig) -> LoadedConfig:
    """Read the live cluster before acting: check the prerequisites, then take its groups.

    A retryable failure to read the cluster is retried with jittered backoff. Raises
    `PrerequisitesNotMet` when a prerequisite is not met (the service exits 2) and `BackendError`
    when the cluster cannot be read.
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(STARTUP_ATTEMPTS),
        wait=wait_random_exponential(multiplier=0.5, max=STARTUP_MAX_WAIT_SECONDS),
        retry=retry_if_exception(lambda exc: isinstance(exc, BackendError) and exc.retryable),
        before_sleep=lambda state: log.warning(
            "describe_cluster_retrying",
            attempt=state.attempt_number,
            error=str(state.outcome and state.outcome.exception()),
        ),
        sleep=anyio.sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            described = await hyperpod.describe_cluster()
    findings = check_cluster(described.document, config.node_pools, config.node_classes, mode="run")
    findings += check_node_pools(config.node_pools)
    for finding in findings:
        if finding.severity == "warning":
            log.warning(
                "cluster_prerequisite", subject=finding.subject, problem=finding.message, fix=finding.fix
            )
    if errors(findings):
        raise PrerequisitesNotMet(described.name, errors(findings))
    log.debug(  # a start that fails later (the health port taken) stays one line at info
        "instance_groups_from_cluster",
        cluster=described.name,
        groups=[g.name for g in described.groups],
        replaced_file_groups=bool(config.instance_groups),
    )
    return with_live_groups(config, described.groups)


def request_cluster_refresh(ctx: DaemonContext, reason: str) -> None:
    """Read the cluster's instance groups again now (e.g. on a HyperPod cluster state-change event)."""
    ctx.log.info("cluster_refresh_requested", reason=reason)
    ctx.cluster_refresh.set()


def _apply(ctx: DaemonContext, described: ClusterDescription) -> None:
    groups = described.groups
    changes = group_changes(ctx.config.instance_groups, groups)
    if any(changes.values()):
        ctx.log.info("instance_groups_changed", **changes)
    for name, types in unknown_types(groups, ctx.catalogue).items():
        ctx.log.warning("instance_types_unknown", group=name, types=types, effect="not planned with")
    for finding in check_cluster(
        described.document, ctx.config.node_pools, ctx.config.node_classes, mode="run"
    ):
        if finding.severity == "error":
            # Found while running (someone changed the cluster): said loudly, acted on at restart.
            ctx.log.error(
                "cluster_prerequisite_broken",
                subject=finding.subject,
                problem=finding.message,
                fix=finding.fix,
            )
    ctx.live_groups = tuple(groups)
    ctx.config = with_live_groups(ctx.config, groups)
    ctx.notify()


async def refresh_cluster(ctx: DaemonContext, interval: float = CLUSTER_REFRESH_SECONDS) -> None:
    """Keep the instance groups current: every `interval` seconds, and at once when asked.

    Only when the groups come from the live cluster (`ctx.live_groups` set at start-up).
    """
    if ctx.live_groups is None:
        return
    while True:
        with anyio.move_on_after(interval):
            await ctx.cluster_refresh.wait()
        ctx.cluster_refresh = anyio.Event()
        try:
            described = await ctx.backends.hyperpod.describe_cluster()
        except BackendError as exc:
            ctx.record(CloudProviderError("DescribeCluster", str(exc)))
            ctx.log.warning("describe_cluster_failed", error=str(exc), kept="last instance groups")
            continue
        _apply(ctx, described)
        ctx.record(ClusterRefreshed())
