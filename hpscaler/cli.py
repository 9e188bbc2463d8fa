"""The `hpscaler` command line."""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn

import click

from hpscaler import __version__
from hpscaler.aws.bodies import add_nodes_body
from hpscaler.cluster_cli import export_cluster, prerequisite_findings, report_findings
from hpscaler.config import ConfigError, LoadedConfig, default_config_path, load_config
from hpscaler.config.settings import MAX_PLACEMENT_SCORE, MIN_PLACEMENT_SCORE
from hpscaler.config.validate import suggest
from hpscaler.kube.inputs import read_manifest_input
from hpscaler.kube.objects import MAX_PODS, ManifestError
from hpscaler.logs import configure as configure_logging
from hpscaler.model import Node, Pod
from hpscaler.planning import plan_pods, plan_to_json, plan_to_table
from hpscaler.progress import ProgressLine, for_stderr
from hpscaler.provisioning.dryrun import plan_requests, requests_table, with_final_nodes
from hpscaler.provisioning.provreq import RequestSet
from hpscaler.scheduling.types import SchedulingInput
from hpscaler.signals import missing_source_warning

if TYPE_CHECKING:
    from hpscaler.kube.snapshot import ClusterSnapshot

EXIT_INVALID = 2
# The progress line of the running command, erased before any message goes to stderr.
_progress = ProgressLine(sys.stderr, enabled=False, command="hpscaler")


def _fail(message: str) -> NoReturn:
    _progress.close()
    click.echo(message, err=True)
    sys.exit(EXIT_INVALID)


def _load(path: str | None, *, live_groups: bool = False) -> LoadedConfig:
    try:
        return load_config(path or default_config_path(), require_instance_groups=not live_groups)
    except ConfigError as exc:
        _fail(f"invalid configuration:\n{exc}")
    except Exception as exc:  # a loader bug must still end as a clear message and exit 2, not a traceback
        _fail(f"cannot load the configuration {path or default_config_path()}: {exc!r}")


_output_option = click.option(
    "--output",
    type=click.Choice(["json", "table"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts (carries schemaVersion).",
)


# Commands imported only when used: their modules pull in kubernetes_asyncio and aiobotocore, which
# would add seconds of start-up to every `plan`. name -> (module, attribute)
_LAZY_COMMANDS = {
    "agent": ("hpscaler.agent.cli", "agent"),
    "interruption": ("hpscaler.cli_interruption", "interruption"),
}


class _Group(click.Group):
    """Lists each command with its whole first sentence (click cuts them at the terminal width), and
    loads the commands of `_LAZY_COMMANDS` when they are asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY_COMMANDS and cmd_name not in self.commands:
            module, attribute = _LAZY_COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                help_text = command.short_help or (command.help or "").split("\n\n")[0]
                rows.append((name, " ".join(help_text.split())))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(__version__, prog_name="hpscaler", help="Show the version and exit.")
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
        found = read_manifest_input(
            path, sys.stdin, max_pods=max_pods, take_requests=False, progress=_reading(option)
        )
    except ManifestError as exc:
        _fail(f"invalid manifest: {exc}")
    if not (found.pods or found.nodes or found.daemonsets):
        _progress.close()
        click.echo(f"warning: {option} {path} holds no objects (empty, or only comments)", err=True)
    return found.pods, found.nodes, found.daemonsets


def _reading(option: str) -> Callable[[int, int], None]:
    """Progress of reading the manifests of `option`, on the command's progress line."""
    _progress.phase(f"reading {option}")
    return lambda done, total: _progress.fraction(done, total, f"{total / 1e6:.0f} MB")


def _pending_manifests(path: str | None, max_pods: int) -> tuple[list[Pod], list[Pod], RequestSet]:
    """Pending pods, DaemonSet pods, and ProvisioningRequests with their PodTemplates."""
    if path is None:
        return [], [], RequestSet()
    try:
        found = read_manifest_input(path, sys.stdin, max_pods=max_pods, progress=_reading("--pods"))
    except ManifestError as exc:
        _fail(f"invalid manifest: {exc}")
    requests = found.requests
    if not found.pods and not found.daemonsets and not requests.requests and not requests.templates:
        _progress.close()
        click.echo(f"warning: --pods {path} holds no objects (empty, or only comments)", err=True)
    return found.pods, found.daemonsets, requests


def _live(config: LoadedConfig, kubeconfig: str | None, context: str | None) -> ClusterSnapshot:
    """Pending pods, nodes and DaemonSets read from the cluster (list calls only)."""
    import anyio

    from hpscaler.backends.protocols import BackendError
    from hpscaler.kube.snapshot import LiveReadError, read_cluster

    configure_logging("warning", "console")  # stdout carries the plan; library chatter stays off it
    kube = config.settings.kubernetes.model_copy(
        update={k: v for k, v in (("kubeconfig", kubeconfig), ("context", context)) if v is not None}
    )
    settings = config.settings.model_copy(update={"kubernetes": kube})
    try:
        snap = anyio.run(read_cluster, settings)
    except (BackendError, LiveReadError) as exc:
        _fail(f"--live: cannot read the cluster: {exc}")
    _progress.close()
    for problem in snap.skipped:
        click.echo(f"skipped: {problem}", err=True)
    return snap


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
    type=click.Path(exists=True, allow_dash=True),
    help="Pending pods: a file, a folder of files, or - for standard input. Pod manifests, Lists, "
    "workloads (Deployment, Job, ...), training jobs (PyTorchJob, TFJob, MPIJob, JobSet, "
    "LeaderWorkerSet), and ProvisioningRequests with their PodTemplates.",
)
@click.option(
    "--nodes",
    "nodes_path",
    type=click.Path(exists=True, allow_dash=True),
    help="Existing Node and bound Pod manifests (a file, a folder, or -).",
)
@click.option(
    "--live",
    is_flag=True,
    help="Read pending pods, nodes and DaemonSets from the cluster (list calls only; "
    "spec.kubernetes or --kubeconfig/--context say how to reach it).",
)
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Kubeconfig for --live.")
@click.option("--context", "kube_context", help="Kubeconfig context for --live.")
@_output_option
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
    pods_path: str | None,
    nodes_path: str | None,
    live: bool,
    kubeconfig: str | None,
    kube_context: str | None,
    output: str,
    ooc: tuple[str, ...],
    score_items: tuple[str, ...],
    max_pods: int,
) -> None:
    """Dry run: where would the scheduler put these pods, and which nodes would it ask for?"""
    if not live and pods_path is None:
        _fail("plan needs --pods FILE|DIR|- or --live")
    if pods_path == "-" and nodes_path == "-":
        _fail("--pods and --nodes cannot both read standard input")
    global _progress
    _progress = for_stderr("hpscaler plan")
    _progress.phase("reading the configuration")
    config = _load(config_path)
    _progress.close()
    report_findings(prerequisite_findings(config, "offline"))  # a dry run only warns
    placement_scores = _scores(score_items, config)
    pods, daemonsets, found = _pending_manifests(pods_path, max_pods)
    bound, nodes, node_daemonsets = _manifests(nodes_path, "--nodes", max_pods)
    if live:
        snap = _live(config, kubeconfig, kube_context)
        pods, nodes, daemonsets = (
            [*pods, *snap.pending],
            [*nodes, *snap.nodes],
            [*daemonsets, *snap.daemonsets],
        )
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
        node.pods = by_node.get(node.name, node.pods)
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
    # The pods read stay alive to the end: keep the cyclic collector from rescanning them while
    # the scheduler allocates (a tenth of the scheduling time at 100,000 pods).
    gc.freeze()
    with _progress.ticking("scheduling", f"{len(pods):,} pods"):
        outcomes, request_pods = plan_requests(
            found.requests,
            found.templates,
            nodes,
            replace(base, daemonsets=[*daemonsets, *node_daemonsets]),
        )
        result, requests = plan_pods(
            cluster=config.cluster_name,
            pods=[*request_pods, *pods],
            nodes=nodes,
            daemonsets=[*daemonsets, *node_daemonsets],
            inp_base=base,
        )
    outcomes = with_final_nodes(outcomes, result)
    with _progress.ticking("writing"):
        if output == "json":
            body = plan_to_json(result, [add_nodes_body(r) for r in requests])
            if found.requests:
                body["provisioningRequests"] = [o.to_json() for o in outcomes]
            text = json.dumps(body, indent=2)
        else:
            text = plan_to_table(result, requests)
            if found.requests:
                text += "\n" + requests_table(outcomes)
    _progress.close()
    click.echo(text)


def _simulated(seconds: float, duration: float) -> None:
    """Progress of `simulate`: how much of the scenario's simulated time has run."""
    _progress.fraction(seconds, duration, f"{_duration(duration)} simulated")


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


@main.command()
@click.argument("scenario_path", type=click.Path(exists=True, dir_okay=False))
@_output_option
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="error",
    show_default=True,
    help="Daemon log events to stderr while simulating.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    help="Also draw the run into FILE (.png, .svg or .html): nodes by group and capacity type, "
    "pending pods, interruptions, capacity losses, cost against all On-Demand. Needs hpscaler[plot].",
)
def simulate(scenario_path: str, output: str, log_level: str, plot_path: str | None) -> None:
    """Run the real daemon loops on the in-memory world, in virtual time, and report."""
    configure_logging(log_level, "console")
    from hpscaler.simulate.plot import PlotError, check_plot_target, write_plot
    from hpscaler.simulate.report import report_table
    from hpscaler.simulate.runner import load_scenario_config
    from hpscaler.simulate.runner import simulate as run_simulation
    from hpscaler.simulate.scenario import ScenarioError, load_scenario

    if plot_path is not None:
        try:
            check_plot_target(plot_path)
        except PlotError as exc:
            _fail(str(exc))

    try:
        scenario = load_scenario(scenario_path)
    except ScenarioError as exc:
        _fail(f"invalid scenario: {exc}")
    global _progress
    # Daemon log lines at info or debug would break the line; errors and warnings are rare.
    _progress = for_stderr("hpscaler simulate") if log_level in ("error", "warning") else _progress
    try:
        report_findings(prerequisite_findings(load_scenario_config(scenario), "offline"))
        _progress.phase("simulating", scenario.name)
        report = run_simulation(scenario, trace=plot_path is not None, progress=_simulated)
    except ConfigError as exc:
        _fail(f"invalid configuration for scenario {scenario.name}:\n{exc}")
    _progress.close()
    if plot_path is not None:
        try:
            write_plot(report, plot_path)
        except PlotError as exc:
            _fail(str(exc))
        click.echo(f"plot written to {plot_path}", err=True)
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
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Log level; wins over HPSCALER_LOG_LEVEL and spec.logging.level.",
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "console", "auto"]),
    help="Log format; wins over HPSCALER_LOG_FORMAT and spec.logging.format.",
)
def run(config_path: str, log_level: str | None, log_format: str | None) -> None:
    """Run the autoscaler as a service (systemd, container): leader election, health, metrics.

    Logs go to stderr (JSON unless on a terminal; HPSCALER_LOG_LEVEL and HPSCALER_LOG_FORMAT
    override spec.logging). SIGTERM/SIGINT stop gracefully within spec.shutdownSeconds (exit 0;
    1 if that limit passed); SIGHUP reloads the configuration. Invalid configuration exits 2.
    """
    from hpscaler.backends.registry import BackendNotFound
    from hpscaler.service.run import run_service

    # The environment is what run_service and every reload read, so the flags hold across SIGHUP.
    if log_level is not None:
        os.environ["HPSCALER_LOG_LEVEL"] = log_level
    if log_format is not None:
        os.environ["HPSCALER_LOG_FORMAT"] = log_format
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
    """List installed backends (entry-point group `hpscaler.backends`) and the roles each serves."""
    from hpscaler.backends.registry import ENTRY_POINT_GROUP, declared_roles, discover

    found = discover()
    if not found:
        _fail(f"no backends installed (entry-point group {ENTRY_POINT_GROUP})")
    click.echo(f"{'NAME':<16} {'ROLES':<40} {'ENTRY POINT':<46} DISTRIBUTION")
    for name, entry in sorted(found.items()):
        dist = f"{entry.dist.name} {entry.dist.version}" if entry.dist is not None else "?"
        try:
            roles = declared_roles(entry.load())
            shown = ",".join(roles) if roles is not None else "(not declared)"
        except Exception as exc:  # a broken plugin is listed with the reason, not fatal
            shown = f"(cannot load: {type(exc).__name__})"
        click.echo(f"{name:<16} {shown:<40} {entry.value:<46} ({dist})")


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script, e.g. `eval "$(hpscaler completion bash)"`."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # every choice is a shell click supports
    click.echo(cls(main, {}, "hpscaler", "_HPSCALER_COMPLETE").source())
