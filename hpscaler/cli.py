"""The `hpscaler` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import click

from hpscaler import __version__
from hpscaler.cluster_cli import export_cluster, prerequisite_findings, report_findings
from hpscaler.config import ConfigError, LoadedConfig, default_config_path, load_config
from hpscaler.config.settings import MAX_PLACEMENT_SCORE, MIN_PLACEMENT_SCORE
from hpscaler.config.validate import suggest
from hpscaler.kube.objects import MAX_PODS, ManifestError, load_manifest_file
from hpscaler.logs import configure as configure_logging
from hpscaler.model import Node, Pod
from hpscaler.planning import plan_pods, plan_to_json, plan_to_table
from hpscaler.scheduling.types import SchedulingInput
from hpscaler.signals import missing_source_warning

EXIT_INVALID = 2


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(EXIT_INVALID)


def _load(path: str | None, *, live_groups: bool = False) -> LoadedConfig:
    try:
        return load_config(path or default_config_path(), require_instance_groups=not live_groups)
    except ConfigError as exc:
        _fail(f"invalid configuration:\n{exc}")
    except Exception as exc:  # a loader bug must still end as a clear message and exit 2, not a traceback
        _fail(f"cannot load the configuration {path or default_config_path()}: {exc!r}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hpscaler")
def main() -> None:
    """hpscaler: autoscaling for SageMaker HyperPod clusters orchestrated by EKS."""


@main.command("check-config")
@click.argument("path", type=click.Path(exists=True), required=False)
def check_config(path: str | None) -> None:
    """Validate configuration and manifests in PATH (a file or directory); exit 2 if invalid.

    Without PATH, the embedded example configuration is validated (and the command says so).
    """
    if path is None:
        click.echo(
            f"no PATH given: checking the embedded example configuration ({default_config_path()}); "
            "pass your configuration directory or file to check it",
            err=True,
        )
    config = _load(path)
    for warning in config.warnings:
        click.echo(str(warning), err=True)
    if no_source := missing_source_warning(config.settings):
        click.echo(no_source, err=True)
    if not report_findings(prerequisite_findings(config, "check")):
        _fail("the cluster is not ready for `hpscaler run`: run the commands above")
    click.echo(
        f"ok: cluster {config.cluster_name}: {len(config.node_pools)} NodePool(s), "
        f"{len(config.node_classes)} HyperpodNodeClass(es), {len(config.instance_groups)} instance group(s)"
    )


def _manifests(
    path: str | None, option: str, max_pods: int = MAX_PODS
) -> tuple[list[Pod], list[Node], list[Pod]]:
    if path is None:
        return [], [], []
    try:
        found = load_manifest_file(Path(path), max_pods=max_pods)
    except ManifestError as exc:
        _fail(f"invalid manifest: {exc}")
    if not any(found):
        click.echo(f"warning: {option} {path} holds no objects (empty, or only comments)", err=True)
    return found


def _scores(values: tuple[str, ...], config: LoadedConfig) -> dict[str, float]:
    """--placement-score items, held to the same rules as the configuration's spec.placementScores."""
    zones = {z for g in config.instance_groups for z in (*g.zones, *g.zone_ids)}
    scores: dict[str, float] = {}
    for item in values:
        zone, _, text = item.partition("=")
        try:
            score = int(text)
        except ValueError:
            _fail(f"--placement-score {item!r}: expected ZONE=SCORE with a whole SCORE, e.g. us-west-2a=9")
        if not MIN_PLACEMENT_SCORE <= score <= MAX_PLACEMENT_SCORE:
            _fail(
                f"--placement-score {item!r}: a Spot placement score is from {MIN_PLACEMENT_SCORE} "
                f"to {MAX_PLACEMENT_SCORE}"
            )
        if zones and zone not in zones:
            close = suggest(zone, zones)
            hint = f"did you mean {close}?" if close else f"known: {', '.join(sorted(zones))}"
            _fail(f"--placement-score {item!r}: {zone} is not a zone or zone id of the cluster; {hint}")
        scores[zone] = float(score)
    return scores


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True),
    help="Config file or directory (default: the embedded example cluster).",
)
@click.option(
    "--pods",
    "pods_path",
    type=click.Path(exists=True),
    required=True,
    help="Pending pods: Pod manifests, a List, or workloads (Deployment, Job, ...).",
)
@click.option(
    "--nodes", "nodes_path", type=click.Path(exists=True), help="Existing Node and bound Pod manifests."
)
@click.option("--output", type=click.Choice(["json", "table"]), default="table", show_default=True)
@click.option(
    "--out-of-capacity",
    "ooc",
    multiple=True,
    metavar="GROUP",
    help="Treat an instance group as out of capacity (repeatable).",
)
@click.option(
    "--placement-score",
    "score_items",
    multiple=True,
    metavar="ZONE=SCORE",
    help="Spot placement score (1-10) of a zone or zone id (repeatable; overrides the config).",
)
@click.option(
    "--max-pods",
    type=click.IntRange(min=1),
    default=MAX_PODS,
    show_default=True,
    help="Refuse inputs that expand to more pods than this (e.g. a Deployment with replicas: 1e9).",
)
def plan(
    config_path: str | None,
    pods_path: str,
    nodes_path: str | None,
    output: str,
    ooc: tuple[str, ...],
    score_items: tuple[str, ...],
    max_pods: int,
) -> None:
    """Dry run: where would the scheduler put these pods, and which nodes would it ask for?"""
    config = _load(config_path)
    report_findings(prerequisite_findings(config, "offline"))  # a dry run only warns
    placement_scores = _scores(score_items, config)
    pods, _, daemonsets = _manifests(pods_path, "--pods", max_pods)
    bound, nodes, node_daemonsets = _manifests(nodes_path, "--nodes", max_pods)
    groups = {g.name: g for g in config.instance_groups}
    unknown = [g for g in ooc if g not in groups]
    if unknown:
        _fail(
            f"--out-of-capacity: unknown instance group(s) {', '.join(unknown)}; known: {', '.join(groups)}"
        )
    settings = config.settings
    unavailable: dict[tuple[str, str], str] = {}
    for name in (*settings.out_of_capacity, *ooc):
        for zone in groups[name].zones:
            unavailable[(name, zone)] = "marked out of capacity"
    catalogue = config.catalogue()
    by_node: dict[str, list[Pod]] = {}
    for pod in bound:
        by_node.setdefault(pod.node_name, []).append(pod)
    for node in nodes:
        node.pods = by_node.get(node.name, [])
    base = SchedulingInput(
        pods=(),
        node_pools=config.node_pools,
        node_classes=config.node_classes,
        groups=config.instance_groups,
        catalogue=catalogue,
        placement_scores={**settings.placement_scores, **placement_scores},
        unavailable=unavailable,
        region=settings.region,
    )
    result, requests = plan_pods(
        cluster=config.cluster_name,
        pods=pods,
        nodes=nodes,
        daemonsets=[*daemonsets, *node_daemonsets],
        inp_base=base,
    )
    if output == "json":
        click.echo(json.dumps(plan_to_json(result, requests), indent=2))
    else:
        click.echo(plan_to_table(result, requests))


@main.command()
@click.argument("scenario_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--output", type=click.Choice(["json", "table"]), default="table", show_default=True)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="error",
    show_default=True,
    help="Daemon log events to stderr while simulating.",
)
def simulate(scenario_path: str, output: str, log_level: str) -> None:
    """Run the real daemon loops on the in-memory world, in virtual time, and report."""
    configure_logging(log_level, "console")
    from hpscaler.simulate.report import report_table
    from hpscaler.simulate.runner import load_scenario_config
    from hpscaler.simulate.runner import simulate as run_simulation
    from hpscaler.simulate.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(scenario_path)
    except ScenarioError as exc:
        _fail(f"invalid scenario: {exc}")
    try:
        report_findings(prerequisite_findings(load_scenario_config(scenario), "offline"))
        report = run_simulation(scenario)
    except ConfigError as exc:
        _fail(f"invalid configuration for scenario {scenario.name}:\n{exc}")
    click.echo(json.dumps(report, indent=2) if output == "json" else report_table(report))
    if report["violations"]:
        sys.exit(1)


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True),
    required=True,
    help="Config file or directory (HpscalerConfig, NodePools, NodeClasses, instance groups).",
)
def run(config_path: str) -> None:
    """Run the autoscaler as a service (systemd, container): leader election, health, metrics.

    Logs go to stderr (JSON unless on a terminal; HPSCALER_LOG_LEVEL and HPSCALER_LOG_FORMAT
    override spec.logging). SIGTERM/SIGINT stop gracefully within spec.shutdownSeconds (exit 0;
    1 if that limit passed); SIGHUP reloads the configuration. Invalid configuration exits 2.
    """
    from hpscaler.backends.registry import BackendNotFound
    from hpscaler.service.run import run_service

    # Invalid configuration: exit 2 with every problem listed. The instance groups come from the
    # live cluster (DescribeCluster), so an instance-groups file is optional here.
    config = _load(config_path, live_groups=True)
    try:
        code = run_service(config_path, config)
    except (BackendNotFound, ValueError) as exc:
        _fail(str(exc))
    sys.exit(code)


main.add_command(export_cluster)


@main.command("backends")
def list_backends() -> None:
    """List the backends installed through the `hpscaler.backends` entry-point group."""
    from hpscaler.backends.registry import ENTRY_POINT_GROUP, discover

    found = discover()
    if not found:
        _fail(f"no backends installed (entry-point group {ENTRY_POINT_GROUP})")
    for name, entry in sorted(found.items()):
        dist = f"{entry.dist.name} {entry.dist.version}" if entry.dist is not None else "?"
        click.echo(f"{name:<20} {entry.value:<50} ({dist})")


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script, e.g. `eval "$(hpscaler completion bash)"`."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # every choice is a shell click supports
    click.echo(cls(main, {}, "hpscaler", "_HPSCALER_COMPLETE").source())


from hpscaler.agent.cli import agent as _agent  # noqa: E402
from hpscaler.cli_interruption import interruption as _interruption  # noqa: E402

main.add_command(_interruption)
main.add_command(_agent)
