"""Launch options remembered across rounds (`optionmemo`): a hit only for the same configuration.

The memo must never hand out options of an older configuration: a changed NodePool, instance group,
DaemonSet (even one mutated in place), placement score, region or catalogue is a miss.
"""

from __future__ import annotations

from dataclasses import replace

from hpscaler.catalogue import load_catalogue
from hpscaler.model import CapacityType, InstanceGroup, NodeClass, NodePool, Pod
from hpscaler.scheduling.optionmemo import MEMO, OptionsMemo
from hpscaler.scheduling.options import build_options
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import SchedulingInput

CAT = load_catalogue()
GI = 2**30
C5, M5 = "ml.c5.2xlarge", "ml.m5.2xlarge"
ZA = "us-west-2a"


def _config(types: tuple[str, ...] = (C5,)) -> tuple[list[NodePool], list[NodeClass], list[InstanceGroup]]:
    group = InstanceGroup("spot-a", types, CapacityType.SPOT, (ZA,))
    return [NodePool("default", "nc")], [NodeClass("nc", ("spot-a",))], [group]


def _daemonset(cpu: int) -> Pod:
    return Pod("kube-system", "agent", {"cpu": cpu, "memory": GI // 8}, owner_kind="DaemonSet")


def _names(options: list[object]) -> list[tuple[str, str, dict[str, int]]]:
    return [(o.spec.name, o.zone, o.allocatable) for o in options]  # type: ignore[attr-defined]


def test_the_same_configuration_is_built_once_and_equals_a_fresh_build() -> None:
    memo = OptionsMemo()
    pools, classes, groups = _config((C5, M5))
    first = memo.options(pools, classes, groups, CAT, [], {ZA: 3.0})
    # Equal values in new objects, as the daemon builds its input every round.
    again = memo.options(list(pools), list(classes), [replace(g) for g in groups], CAT, [], {ZA: 3.0})
    assert again is first
    assert (memo.hits, memo.misses) == (1, 1)
    assert _names(first) == _names(build_options(pools, classes, groups, CAT, [], {ZA: 3.0}))


def test_a_changed_group_pool_score_region_or_catalogue_is_a_miss() -> None:
    memo = OptionsMemo()
    pools, classes, groups = _config()
    base = memo.options(pools, classes, groups, CAT, [], {})
    more_types = memo.options(pools, classes, [replace(groups[0], instance_types=(C5, M5))], CAT, [], {})
    assert {o.spec.name for o in more_types} == {C5, M5}
    weighted = memo.options([replace(pools[0], weight=10)], classes, groups, CAT, [], {})
    assert weighted[0].node_pool.weight == 10
    scored = memo.options(pools, classes, groups, CAT, [], {ZA: 7.0})
    assert scored[0].score == 7.0
    regional = memo.options(pools, classes, groups, CAT, [], {}, region="us-west-2")
    cheaper = CAT.with_prices({})
    repriced = memo.options(pools, classes, groups, cheaper, [], {})
    assert memo.misses == 6 and memo.hits == 0
    assert len({id(x) for x in (base, more_types, weighted, scored, regional, repriced)}) == 6


def test_a_daemonset_changed_in_place_is_a_miss() -> None:
    memo = OptionsMemo()
    pools, classes, groups = _config()
    agent = _daemonset(500)
    before = memo.options(pools, classes, groups, CAT, [agent], {})
    agent.requests["cpu"] = 1500  # `Pod` is mutable: the memo must have copied what it read
    after = memo.options(pools, classes, groups, CAT, [agent], {})
    assert after is not before
    assert before[0].allocatable["cpu"] - after[0].allocatable["cpu"] == 1000


def test_the_least_recently_used_configuration_is_forgotten_first() -> None:
    memo = OptionsMemo(size=2)
    pools, classes, groups = _config()
    first = memo.options(pools, classes, groups, CAT, [], {ZA: 1.0})
    memo.options(pools, classes, groups, CAT, [], {ZA: 2.0})
    assert memo.options(pools, classes, groups, CAT, [], {ZA: 1.0}) is first  # now the most recent
    memo.options(pools, classes, groups, CAT, [], {ZA: 3.0})  # evicts {ZA: 2.0}
    assert memo.options(pools, classes, groups, CAT, [], {ZA: 1.0}) is first
    misses = memo.misses
    memo.options(pools, classes, groups, CAT, [], {ZA: 2.0})
    assert memo.misses == misses + 1
    memo.clear()
    assert memo.options(pools, classes, groups, CAT, [], {ZA: 1.0}) is not first


def test_rounds_of_one_configuration_share_options_and_plan_alike() -> None:
    pools, classes, groups = _config()
    pods = [Pod("default", f"p{i}", {"cpu": 1000 + i, "memory": GI}) for i in range(12)]
    inp = SchedulingInput(pods=pods, node_pools=pools, node_classes=classes, groups=groups, catalogue=CAT)
    MEMO.clear()
    first = solve(inp)
    hits = MEMO.hits
    second = solve(replace(inp, pods=list(reversed(pods))))
    assert MEMO.hits == hits + 1
    assert [(n.instance_type, sorted(n.pods)) for n in first.new_nodes] == [
        (n.instance_type, sorted(n.pods)) for n in second.new_nodes
    ]
