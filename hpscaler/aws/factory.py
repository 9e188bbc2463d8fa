"""The `aws` backend: the entry-point factory that opens the clients and builds the three backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hpscaler.aws.placement import SpotPlacementScores
from hpscaler.aws.retry import RetryPolicy
from hpscaler.aws.sagemaker import SageMakerHyperPod
from hpscaler.aws.session import aws_clients
from hpscaler.aws.sqs import SqsInterruptions
from hpscaler.backends.protocols import BackendError
from hpscaler.backends.registry import BackendSet, serves
from hpscaler.config import LoadedConfig


@serves("hyperpod", "scores", "interruptions", "prices")
@asynccontextmanager
async def aws_backends(config: LoadedConfig) -> AsyncIterator[BackendSet]:
    """HyperPod, placement scores, Spot prices and (when `spec.aws.interruptionQueueUrl` is set) the queue."""
    settings = config.settings
    cluster = config.cluster_name or settings.cluster_name
    if not cluster:
        raise BackendError("the aws backend needs spec.clusterName", retryable=False, code="NoClusterName")
    retry = RetryPolicy.from_settings(settings)
    async with aws_clients(settings) as clients:
        queue_url = settings.aws.interruption_queue_url
        # One EC2 client serves both: placement scores and Spot prices are the same market.
        market = SpotPlacementScores(
            clients.ec2,
            clients.region,
            refresh_seconds=settings.aws.placement_score_refresh_seconds,
            retry=retry,
        )
        yield BackendSet(
            hyperpod=SageMakerHyperPod(clients.sagemaker, clients.ec2, cluster, retry=retry),
            scores=market,
            interruptions=SqsInterruptions(clients.sqs, queue_url, retry=retry) if queue_url else None,
            prices=market,
        )
