"""The real AWS backend: SageMaker HyperPod, EC2 Spot placement scores and the SQS interruption queue.

All three share one aiobotocore session (`aws_clients`) and one retry policy (`RetryPolicy`).
aiobotocore is untyped; `Any` stays inside this package and only the backend types leave it.
The names below are imported on first use, so that the pure `hpscaler.aws.bodies` (what `plan`
prints) does not load aiobotocore.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpscaler.aws.placement import SpotPlacementScores, SpotPrice, pad_instance_types
    from hpscaler.aws.retry import RetryPolicy, call_aws
    from hpscaler.aws.sagemaker import SageMakerHyperPod
    from hpscaler.aws.session import AwsClients, aws_clients
    from hpscaler.aws.sqs import SqsInterruptions, parse_message

_MODULES = {
    "AwsClients": "session",
    "RetryPolicy": "retry",
    "SageMakerHyperPod": "sagemaker",
    "SpotPlacementScores": "placement",
    "SpotPrice": "placement",
    "SqsInterruptions": "sqs",
    "aws_clients": "session",
    "call_aws": "retry",
    "pad_instance_types": "placement",
    "parse_message": "sqs",
}

__all__ = [
    "AwsClients",
    "RetryPolicy",
    "SageMakerHyperPod",
    "SpotPlacementScores",
    "SpotPrice",
    "SqsInterruptions",
    "aws_clients",
    "call_aws",
    "pad_instance_types",
    "parse_message",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
