"""`hpscaler interruption parse FILE|-`: what hpscaler would do with one SQS message body."""

from __future__ import annotations

import json
import time
from typing import TextIO

import click

from hpscaler.aws.eventbridge import parse_message
from hpscaler.signals import signal_to_json


@click.group("interruption")
def interruption() -> None:
    """Check interruption messages and EventBridge rules."""


@interruption.command("parse")
@click.argument("source", type=click.File("r"))
@click.option("--output", type=click.Choice(["json", "table"]), default="table", show_default=True)
@click.option(
    "--rebalance-as-warning",
    is_flag=True,
    help="Decide as with spec.interruption.rebalanceAsWarning: true.",
)
def parse(source: TextIO, output: str, rebalance_as_warning: bool) -> None:
    """Print what hpscaler would do with one SQS message body (FILE, or - for stdin).

    SNS-wrapped messages are unwrapped; a message naming several instances (an AWS Health event)
    yields a list. An event with an empty `time` is read as received now.
    """
    body = source.read()
    signals = parse_message(body, "parse", "", received_at=time.time())
    rows = [signal_to_json(s, rebalance_as_warning=rebalance_as_warning) for s in signals]
    if output == "json":
        click.echo(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['kind']:<34} instance={row['instanceId'] or '-'} deadline={row['deadline'] or '-'} "
            f"action={row['action']}\n  {row['reason']}"
        )
