"""The real AWS backend: SageMaker HyperPod, EC2 Spot placement scores and the SQS interruption queue.

All three share one aiobotocore session (`aws_clients`) and one retry policy (`RetryPolicy`).
aiobotocore is untyped; `Any` stays inside this package and only the backend types leave it.
"""

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
