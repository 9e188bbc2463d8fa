"""Outside information kept fresh: Spot prices, the cluster's own NodePools and NodeClasses (with
status written back), and HyperPod's cluster events in the log stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import anyio
import pytest
from daemon_harness import C5_2X, ON_DEMAND_AZ1, SPOT_AZ1, ZONE_A, running, wait_for, web_pod

from hpscaler.backends.types import ClusterNodeConfig
from hpscaler.catalogue import Catalogue, PriceOverride
from hpscaler.config import LoadedConfig
from hpscaler.daemon.events import HyperPodEventSeen
from hpscaler.daemon.refresh import PRICE_REFRESH_SECONDS, apply_node_config, spot_price_overrides
from hpscaler.fake import FakeKubernetes
from hpscaler.model import CapacityType, InstanceGroup, NodeClass, NodePool, Requirement

SPOT = CapacityType.SPOT
ON_DEMAND_ONLY = Requirement("karpenter.sh/capacity-type", "In", ("on-demand",))


def group(name: str, types: tuple[str, ...], zones: tuple[str, ...], capacity: CapacityType) -> InstanceGroup:
    return InstanceGroup(name, types, capacity, zones)


def test_spot_prices_are_the_median_over_the_zones_spot_groups_use() -> None:
    groups = [
        group("s1", ("ml.c5.2xlarge", "ml.c5.xlarge"), ("a", "b"), SPOT),
        group("s2", ("ml.c5.2xlarge",), ("c",), SPOT),
        group("od", ("ml.m5.xlarge",), ("a",), CapacityType.ON_DEMAND),
    ]
    quotes = {
        ("ml.c5.2xlarge", "a"): 0.10,
        ("ml.c5.2xlarge", "b"): 0.30,
        ("ml.c5.2xlarge", "c"): 0.20,
        ("ml.c5.2xlarge", "d"): 9.99,  # a zone no group launches in
        ("ml.c5.xlarge", "a"): 0.05,
        ("ml.m5.xlarge", "a"): 0.07,  # only an On-Demand group uses it
    }
    assert spot_price_overrides(quotes, groups) == {
        "ml.c5.2xlarge": PriceOverride(spot=0.20),
        "ml.c5.xlarge": PriceOverride(spot=0.05),
    }
    # A price pinned in the configuration wins over the market.
    assert spot_price_overrides(quotes, groups, pinned=["ml.c5.2xlarge"]) == {
        "ml.c5.xlarge": PriceOverride(spot=0.05)
    }
    assert spot_price_overrides({}, groups) == {}


def test_cluster_node_config_replaces_the_files_only_when_valid(seed_config: LoadedConfig) -> None:
    (node_class,) = seed_config.node_classes
    on_demand = NodePool(
        "od-only",
        node_class.name,
        requirements=(Requirement("karpenter.sh/capacity-type", "In", ("on-demand",)),),
    )
    found = ClusterNodeConfig((on_demand,), (node_class,), present=True)
    updated, skipped = apply_node_config(seed_config, found)
    assert [p.name for p in updated.node_pools] == ["od-only"] and skipped == []

    stray = NodeClass("stray", ("no-such-group",))
    orphan = NodePool("orphan", "stray")
    found = ClusterNodeConfig((orphan,), (stray,), present=True, invalid=("NodePool broken: bad spec",))
    kept, skipped = apply_node_config(seed_config, found)
    assert kept is seed_config  # nothing valid: the files' NodePools stay in force
    assert skipped == [
        "NodePool broken: bad spec",
        "HyperpodNodeClass stray: unknown instance groups ['no-such-group']",
        "NodePool orphan: HyperpodNodeClass stray is missing or invalid",
    ]


class Market:
    """A Spot price source whose prices the test sets."""

    def __init__(self, quotes: dict[tuple[str, str], float]) -> None:
        self.quotes = quotes
        self.calls = 0

    async def prices(self, instance_types: Sequence[str]) -> Mapping[tuple[str, str], float]:
        self.calls += 1
        return {k: v for k, v in self.quotes.items() if k[0] in instance_types}


@pytest.mark.looptime
async def test_spot_prices_follow_the_market_every_hour(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    market = Market({(C5_2X, ZONE_A): 0.123})
    async with running(seed_config, catalogue, start_daemon=False) as h:
        daemon = h.new_daemon(prices=market)
        await h.tg.start(daemon.run)
        await wait_for(lambda: market.calls == 1, 5)
        assert daemon.ctx.catalogue.get(C5_2X).spot_price == 0.123
        market.quotes[(C5_2X, ZONE_A)] = 0.2
        await wait_for(lambda: market.calls == 2, PRICE_REFRESH_SECONDS + 5)
        assert daemon.ctx.catalogue.get(C5_2X).spot_price == 0.2


class ClusterWithNodePools(FakeKubernetes):
    """The fake API server plus custom resources, as the real backend reads them."""

    found = ClusterNodeConfig()
    published: list[Mapping[str, InstanceGroup] | None]

    async def node_config(self) -> ClusterNodeConfig:
        return self.found

    async def publish_status(self, groups: Mapping[str, InstanceGroup] | None) -> int:
        self.published.append(groups)
        return 1


@pytest.mark.looptime
async def test_nodepools_applied_to_the_cluster_take_effect_and_get_status(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, start_daemon=False) as h:
        kube = h.world.kubernetes
        kube.__class__ = ClusterWithNodePools  # the same fake world, with custom resources
        assert isinstance(kube, ClusterWithNodePools)
        kube.published = []
        (pool,) = seed_config.node_pools
        (node_class,) = seed_config.node_classes
        on_demand = replace(
            pool,
            name="od-only",
            requirements=(
                *pool.requirements,
                Requirement("karpenter.sh/capacity-type", "In", ("on-demand",)),
            ),
        )
        kube.found = ClusterNodeConfig((on_demand,), (node_class,), present=True)
        daemon = h.new_daemon()
        await h.tg.start(daemon.run)
        await wait_for(lambda: bool(kube.published), 5)
        assert [p.name for p in daemon.ctx.config.node_pools] == ["od-only"]
        assert kube.published[0] is not None and SPOT_AZ1 in kube.published[0]

        kube.add_pod(web_pod("w-0", cpu=2000))
        await wait_for(lambda: any(p.node_name for p in kube.pods()), 600)
        assert {n.instance_group for n in kube.nodes()} == {ON_DEMAND_AZ1}  # the cluster's pool ruled


@pytest.mark.looptime
async def test_hyperpod_events_are_relayed_and_counted(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        for i in range(3):
            h.world.kubernetes.add_pod(web_pod(f"w-{i}", cpu=2000))
        await wait_for(lambda: len(h.running_pods()) == 3, 600)
        await anyio.sleep(120)
        launched = [e for e in h.world.hyperpod.events() if "is Running" in e.description]
        assert launched
        assert h.ctx.stats.events.count(HyperPodEventSeen, level="Info") >= len(launched)
