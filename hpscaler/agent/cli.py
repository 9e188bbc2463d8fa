"""`hpscaler agent`: run the node agent (one per node, as a DaemonSet)."""

from __future__ import annotations

import os
import signal
from typing import Any

import aiohttp
import anyio
import click
from kubernetes_asyncio import client, config

from hpscaler.agent.imds import DEFAULT_URL, ImdsClient
from hpscaler.agent.runner import Agent, ApiNodeReporter
from hpscaler.logs import configure as configure_logging


async def _serve(node_name: str, imds_url: str, poll_seconds: float, kubeconfig: str) -> None:
    configuration = client.Configuration()
    if not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
        load_incluster: Any = config.load_incluster_config
        load_incluster(client_configuration=configuration)
    else:
        await config.load_kube_config(config_file=kubeconfig or None, client_configuration=configuration)
    async with (
        aiohttp.ClientSession() as session,
        client.ApiClient(configuration) as api,
        anyio.create_task_group() as tg,
    ):
        agent = Agent(
            ImdsClient(session, imds_url), ApiNodeReporter(api, node_name), poll_seconds=poll_seconds
        )
        tg.start_soon(agent.run, name="agent")
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                tg.cancel_scope.cancel()
                return


@click.command("agent")
@click.option("--node-name", envvar="NODE_NAME", required=True, help="This node's name (the downward API).")
@click.option("--imds-url", default=DEFAULT_URL, show_default=True, help="The instance metadata service.")
@click.option(
    "--poll-seconds", type=click.FloatRange(1, 60), default=5.0, show_default=True, help="IMDS poll interval."
)
@click.option("--kubeconfig", default="", help="Outside a pod: the kubeconfig to use.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
def agent(node_name: str, imds_url: str, poll_seconds: float, kubeconfig: str, log_level: str) -> None:
    """Watch IMDS on this node for Spot, rebalance and maintenance notices; report them on its Node."""
    configure_logging(log_level, "json")
    anyio.run(_serve, node_name, imds_url, poll_seconds, kubeconfig)
