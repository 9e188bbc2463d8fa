"""deploy/grafana-dashboard.json shows what /metrics exports, and only that.

The exported metrics come from the daemon's own collector (`hpscaler.service.metrics`), fed with a
daemon context in which every labelled family has a sample, so label names are checked too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hpscaler.clock import LoopClock
from hpscaler.config import load_config
from hpscaler.daemon.app import Daemon
from hpscaler.daemon.context import Backends
from hpscaler.daemon.events import (
    CloudProviderError,
    InterruptionOutcome,
    InterruptionReceived,
    NodeCreated,
    NodeDisrupted,
)
from hpscaler.fake import World
from hpscaler.service.metrics import registry_for

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana-dashboard.json"
MULTI_AZ = REPO / "config" / "scenarios" / "multi-az"
METRIC = re.compile(r"\b((?:karpenter|hpscaler)_[a-z0-9_]+)")
# PromQL words that are not label names inside by (...) / {...}
_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Every sample name /metrics exports, with the label names it carries."""
    result: dict[str, set[str]] = anyio.run(_scrape)
    return result


async def _scrape() -> dict[str, set[str]]:
    config = load_config(MULTI_AZ)  # a NodePool with limits, so karpenter_nodepools_limit has samples
    world = World(config.cluster_name, config.instance_groups, clock=LoopClock(0.0))
    backends = Backends(world.kubernetes, world.hyperpod, world.placement, world.interruptions)
    daemon = Daemon(config, backends, config.catalogue(), world.clock)
    ctx = daemon.ctx
    group = config.instance_groups[0].name
    for event in (
        NodeCreated(group, "n-1"),
        InterruptionReceived("spot-interruption", "sqs", "i-1"),
        NodeDisrupted("node-1", "Empty", "general"),
        InterruptionOutcome("handled", "i-1"),
        CloudProviderError("ListClusterNodes", "throttled"),
    ):
        ctx.record(event)
    ctx.stats.decision_seconds.append(0.01)
    ctx.stats.taint_latency.append(0.5)
    text = generate_latest(registry_for(lambda: ctx, lambda: True)).decode()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(data: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in data["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def expressions(data: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(data) for t in p.get("targets", [])]


def test_every_metric_the_dashboard_names_is_exported(exported: dict[str, set[str]]) -> None:
    named = {m for expr in expressions(dashboard()) for m in METRIC.findall(expr)}
    assert named, "the dashboard names no metric"
    missing = sorted(named - exported.keys())
    assert not missing, f"not exported by the daemon: {missing}"


def test_every_label_the_dashboard_groups_or_filters_by_exists(exported: dict[str, set[str]]) -> None:
    for expr in expressions(dashboard()):
        metrics = METRIC.findall(expr)
        labels = set().union(*(exported.get(m, set()) for m in metrics)) | {"le"}
        used = set()
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            used.update(label.strip() for label in group.split(","))
        used.update(re.findall(r"\{([a-z_]+)=", expr))
        assert used <= labels, f"{expr}: labels {sorted(used - labels)} are not on {metrics}"


def test_every_exported_family_is_on_the_dashboard(exported: dict[str, set[str]]) -> None:
    def family(name: str) -> str:
        for suffix in _SUFFIXES:
            if name.endswith(suffix):
                return name.removesuffix(suffix)
        return name

    named = {family(m) for expr in expressions(dashboard()) for m in METRIC.findall(expr)}
    assert sorted({family(m) for m in exported} - named) == []


def test_the_dashboard_is_importable_grafana_json() -> None:
    data = dashboard()
    assert data["uid"] and data["title"] and isinstance(data["schemaVersion"], int)
    assert any(v["type"] == "datasource" for v in data["templating"]["list"])
    ids = [p["id"] for p in panels(data)]
    assert len(ids) == len(set(ids))
    for panel in panels(data):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
            for target in panel["targets"]:
                assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
