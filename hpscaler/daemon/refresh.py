"""Outside information the decisions use, kept fresh: Spot placement scores, Spot prices, the
NodePools and HyperpodNodeClasses applied to the cluster. (HyperPod's cluster events are an
interruption source: `hpscaler.daemon.signal_sources`.)

Each loop keeps the last good answer when a call fails: stale information beats none.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import replace

import anyio

from hpscaler.backends.protocols import BackendError, NodeConfigSource
from hpscaler.backends.types import ClusterNodeConfig
from hpscaler.catalogue import PriceOverride
from hpscaler.config import LoadedConfig
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.events import CloudProviderError
from hpscaler.model import CapacityType, InstanceGroup

SCORE_REFRESH_SECONDS = 600.0
PRICE_REFRESH_SECONDS = 3600.0  # EC2 moves Spot prices at most a few times a day
NODE_CONFIG_SECONDS = 60.0


async def refresh_scores(ctx: DaemonContext) -> None:
    """Keep Spot placement scores fresh; on failure the last scores stay in use."""
    source = ctx.backends.scores
    if source is None:
        return
    while True:
        spot = _spot_groups(ctx.config.instance_groups)
        if spot:
            try:
                ctx.scores = dict(await source.scores(_types(spot), target_capacity=len(spot)))
                ctx.log.info("placement_scores_refreshed", scores=ctx.scores)
            except BackendError as exc:
                ctx.record(CloudProviderError("GetSpotPlacementScores", str(exc), provider="ec2"))
                ctx.log.warning("placement_scores_failed", error=str(exc), kept=ctx.scores)
        await anyio.sleep(SCORE_REFRESH_SECONDS)


def _spot_groups(groups: Iterable[InstanceGroup]) -> list[InstanceGroup]:
    return [g for g in groups if g.capacity_type is CapacityType.SPOT]


def _types(groups: Iterable[InstanceGroup]) -> list[str]:
    return sorted({t for g in groups for t in g.instance_types})


def spot_price_overrides(
    quotes: Mapping[tuple[str, str], float],
    groups: Iterable[InstanceGroup],
    pinned: Iterable[str] = (),
) -> dict[str, PriceOverride]:
    """Per instance type, the median Spot price over the zones its Spot groups launch in.

    Types whose Spot price the configuration pins (`pinned`) keep it: an explicit setting wins over
    the market. Types with no quote in those zones keep the catalogue's default.
    """
    zones: dict[str, set[str]] = {}
    for group in _spot_groups(groups):
        for type_name in group.instance_types:
            zones.setdefault(type_name, set()).update(group.zones)
    keep = set(pinned)
    overrides: dict[str, PriceOverride] = {}
    for type_name, where in sorted(zones.items()):
        seen = [price for (t, zone), price in quotes.items() if t == type_name and zone in where]
        if seen and type_name not in keep:
            overrides[type_name] = PriceOverride(spot=statistics.median(seen))
    return overrides


async def refresh_spot_prices(ctx: DaemonContext) -> None:
    """Keep the catalogue's Spot prices at the market's; ranking and cost reports follow them."""
    source = ctx.backends.prices
    if source is None:
        return
    while True:
        groups = ctx.config.instance_groups
        spot = _spot_groups(groups)
        if spot:
            try:
                quotes = await source.prices(_types(spot))
            except BackendError as exc:
                ctx.record(CloudProviderError("DescribeSpotPriceHistory", str(exc), provider="ec2"))
                ctx.log.warning("spot_prices_failed", error=str(exc))
            else:
                pinned = [n for n, p in ctx.config.settings.prices.items() if p.spot is not None]
                overrides = spot_price_overrides(quotes, groups, pinned)
                ctx.catalogue = ctx.catalogue.with_prices(overrides)
                ctx.log.info("spot_prices_refreshed", prices={n: o.spot for n, o in overrides.items()})
        await anyio.sleep(PRICE_REFRESH_SECONDS)


def apply_node_config(config: LoadedConfig, found: ClusterNodeConfig) -> tuple[LoadedConfig, list[str]]:
    """The configuration with the cluster's NodePools and NodeClasses in force, and what was skipped.

    Objects that name instance groups the cluster does not have, or NodeClasses that do not exist,
    are skipped with a reason. With no valid NodePool in the cluster the files' configuration stays:
    an empty or half-applied set of custom resources must not scale everything to zero.
    """
    skipped = list(found.invalid)
    known = {g.name for g in config.instance_groups}
    classes = []
    for node_class in found.node_classes:
        missing = [g for g in node_class.instance_groups if g not in known]
        if missing:
            skipped.append(f"HyperpodNodeClass {node_class.name}: unknown instance groups {missing}")
        else:
            classes.append(node_class)
    names = {c.name for c in classes}
    pools = []
    for pool in found.node_pools:
        if pool.node_class in names:
            pools.append(pool)
        else:
            skipped.append(f"NodePool {pool.name}: HyperpodNodeClass {pool.node_class} is missing or invalid")
    if not pools:
        return config, skipped
    return replace(config, node_pools=tuple(pools), node_classes=tuple(classes)), skipped


async def sync_node_config(ctx: DaemonContext) -> None:
    """Follow the NodePools and HyperpodNodeClasses users apply to the cluster, and report status."""
    source = ctx.backends.kubernetes
    if not ctx.config.settings.kubernetes.read_custom_resources or not isinstance(source, NodeConfigSource):
        return
    files = ctx.config  # what the daemon was started (or last reloaded) with
    while True:
        try:
            found = await source.node_config()
        except BackendError as exc:
            ctx.log.warning("node_config_read_failed", error=str(exc), kept="current NodePools")
        else:
            if ctx.config.settings is not files.settings:
                files = ctx.config  # a SIGHUP reload brought new files
            if found.present:
                # The groups in force: the cluster's own when they are read live (cluster_sync).
                current = replace(files, instance_groups=ctx.config.instance_groups)
                updated, skipped = apply_node_config(current, found)
                for reason in skipped:
                    ctx.log.warning("node_config_object_skipped", reason=reason)
                if (updated.node_pools, updated.node_classes) != (
                    ctx.config.node_pools,
                    ctx.config.node_classes,
                ):
                    ctx.config = updated
                    ctx.log.info(
                        "node_config_from_cluster",
                        node_pools=[p.name for p in updated.node_pools],
                        node_classes=[c.name for c in updated.node_classes],
                    )
                await _publish(ctx, source)
        await anyio.sleep(NODE_CONFIG_SECONDS)


async def _publish(ctx: DaemonContext, source: NodeConfigSource) -> None:
    try:
        described = await ctx.backends.hyperpod.describe_cluster()
        groups: dict[str, InstanceGroup] | None = {g.name: g for g in described.groups}
    except BackendError as exc:
        ctx.log.warning("describe_cluster_failed", error=str(exc))
        groups = None  # conditions that need the groups say Unknown
    try:
        await source.publish_status(groups)
    except BackendError as exc:
        ctx.log.warning("node_config_status_failed", error=str(exc))
