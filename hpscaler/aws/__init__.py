"""The real AWS backend: SageMaker HyperPod, EC2 Spot placement scores and the SQS interruption queue.

All three share one aiobotocore session (`aws_clients`) and one retry policy (`RetryPolicy`).
aiobotocore is untyped; `Any` stays inside this package and only the backend types leave it.
The names below are imported on first use, so that the pure `hpscaler.aws.bodies` (what `plan`
prints) does not load aiobotocore.
"""

from typing import TYPE_CHECKING

from hpscaler.lazy import lazy_exports

if TYPE_CHECKING:
    from hpscaler.aws.placement import SpotPlacementScores, SpotPrice, pad_instance_types
    from hpscaler.aws.retry import RetryPolicy, call_aws
    from hpscaler.aws.sagemaker import SageMakerHyperPod
    from hpscaler.aws.session import AwsClients, aws_clients
    from hpscaler.aws.sqs import SqsInterruptions, parse_message

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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "placement": ("SpotPlacementScores", "SpotPrice", "pad_instance_types"),
        "retry": ("RetryPolicy", "call_aws"),
        "sagemaker": ("SageMakerHyperPod",),
        "session": ("AwsClients", "aws_clients"),
        "sqs": ("SqsInterruptions", "parse_message"),
    },
)
