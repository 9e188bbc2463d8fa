"""Commands about the live cluster: `hpscaler export-cluster`, and the prerequisite report that
`check-config`, `plan` and `simulate` print (see `hpscaler.prerequisites`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import click

from hpscaler.config import ConfigError, LoadedConfig, load_config
from hpscaler.config.settings import Settings
from hpscaler.prerequisites import Finding, Mode, check_cluster, check_node_pools

EXIT_INVALID = 2
# Keys AWS always puts in DescribeCluster's answer and people do not write by hand: a document with
# one of them is the cluster's own description, whose prerequisites can be checked.
_DESCRIBED_KEYS = ("ClusterArn", "ClusterStatus")


def prerequisite_findings(config: LoadedConfig, mode: Mode) -> list[Finding]:
    """What the configuration's DescribeCluster documents (and NodePools) say against hpscaler acting."""
    found: dict[Finding, None] = {}
    described = [d for d in config.cluster_documents if any(key in d for key in _DESCRIBED_KEYS)]
    for document in described:
        found.update(
            dict.fromkeys(check_cluster(document, config.node_pools, config.node_classes, mode=mode))
        )
    if described and mode != "offline":  # NodePool advice is for a cluster that runs, not a dry run
        found.update(dict.fromkeys(check_node_pools(config.node_pools)))
    return list(found)


def report_findings(findings: list[Finding]) -> bool:
    """Print each finding to stderr; True when none is an error."""
    for finding in findings:
        click.echo(str(finding), err=True)
    return not any(f.severity == "error" for f in findings)


async def describe_for_export(settings: Settings) -> dict[str, Any]:
    """DescribeCluster of `settings.cluster_name`, with its groups' subnets in DescribeSubnets' shape."""
    from hpscaler.aws.retry import RetryPolicy
    from hpscaler.aws.sagemaker import SageMakerHyperPod
    from hpscaler.aws.session import aws_clients

    async with aws_clients(settings) as clients:
        hyperpod = SageMakerHyperPod(
            clients.sagemaker, clients.ec2, settings.cluster_name, retry=RetryPolicy.from_settings(settings)
        )
        described = await hyperpod.describe_cluster()
    return dict(described.document)


def _settings(name: str, region: str | None, config_path: str | None) -> Settings:
    settings = Settings()
    if config_path is not None:
        try:
            settings = load_config(config_path, require_instance_groups=False).settings
        except ConfigError as exc:
            click.echo(f"invalid configuration:\n{exc}", err=True)
            sys.exit(EXIT_INVALID)
    update: dict[str, Any] = {"cluster_name": name}
    if region:
        update["region"] = region
    return settings.model_copy(update=update)


@click.command("export-cluster")
@click.argument("name")
@click.option("--region", help="AWS region of the cluster (default: the standard AWS configuration's).")
@click.option(
    "--output",
    "output",
    type=click.Path(dir_okay=False, writable=True),
    help="File to write (default: standard output), e.g. /etc/hpscaler/instance-groups.json.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True),
    help="An hpscaler configuration whose spec.aws settings (profile, endpoints) to use.",
)
def export_cluster(name: str, region: str | None, output: str | None, config_path: str | None) -> None:
    """Write the instance-groups file of a live cluster (DescribeCluster plus its subnets' zones).

    The file is what `plan` and `simulate` read offline; `run` reads the cluster itself.
    """
    from hpscaler.backends.protocols import BackendError

    settings = _settings(name, region, config_path)
    try:
        document = anyio.run(describe_for_export, settings)
    except BackendError as exc:
        click.echo(f"cannot describe cluster {name}: {exc}", err=True)
        sys.exit(1)
    text = json.dumps(document, indent=2, default=str, sort_keys=True) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    Path(output).write_text(text)
    groups = [g.get("InstanceGroupName") for g in document.get("InstanceGroups") or []]
    click.echo(
        f"wrote {output}: cluster {document.get('ClusterName', name)}, {len(groups)} instance group(s)",
        err=True,
    )
