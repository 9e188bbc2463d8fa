"""One aiobotocore session and the three clients the AWS backend uses, opened once per daemon."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from hpscaler.backends.protocols import BackendError
from hpscaler.config.settings import Aws, Settings

SERVICES = ("sagemaker", "ec2", "sqs")
SQS_WAIT_SECONDS = 20  # the longest long poll SQS allows

# botocore's "max_attempts" counts retries, not attempts; total_max_attempts=1 means exactly one
# request, so `retry.RetryPolicy` alone decides about retrying (two layers would multiply).
_RETRIES = {"mode": "standard", "total_max_attempts": 1}


@dataclass(frozen=True, slots=True)
class AwsClients:
    """aiobotocore clients (untyped: `Any` stays inside `hpscaler.aws`)."""

    sagemaker: Any
    ec2: Any
    sqs: Any
    region: str


def client_config() -> AioConfig:
    """Timeouts and retries for every client: the read timeout outlasts an SQS long poll."""
    return AioConfig(
        retries=dict(_RETRIES),
        connect_timeout=10,
        read_timeout=SQS_WAIT_SECONDS + 40,
        max_pool_connections=20,
        user_agent_appid="hpscaler",
    )


def endpoint_for(aws: Aws, service: str) -> str | None:
    """The per-service endpoint, else the shared one, else None (AWS's regional endpoint)."""
    specific = {
        "sagemaker": aws.sagemaker_endpoint_url,
        "ec2": aws.ec2_endpoint_url,
        "sqs": aws.sqs_endpoint_url,
    }
    return specific.get(service) or aws.endpoint_url or None


@asynccontextmanager
async def aws_clients(settings: Settings, *, session: AioSession | None = None) -> AsyncIterator[AwsClients]:
    """Open the SageMaker, EC2 and SQS clients; credentials come from the standard chain.

    `spec.aws.profile` picks a profile of the shared config files; `spec.region` overrides the
    region the chain would find. `session` lets tests hook botocore events.
    """
    if session is None:
        session = AioSession(profile=settings.aws.profile or None)
    region = settings.region or session.get_config_variable("region") or ""
    if not region:
        raise BackendError(
            "no AWS region: set spec.region or AWS_REGION/AWS_DEFAULT_REGION",
            retryable=False,
            code="NoRegion",
        )
    config = client_config()
    async with AsyncExitStack() as stack:
        clients = {
            service: await stack.enter_async_context(
                session.create_client(
                    service,
                    region_name=region,
                    endpoint_url=endpoint_for(settings.aws, service),
                    config=config,
                )
            )
            for service in SERVICES
        }
        yield AwsClients(clients["sagemaker"], clients["ec2"], clients["sqs"], region)
