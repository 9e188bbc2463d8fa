"""hpscaler: a self-hosted autoscaler for Amazon SageMaker HyperPod clusters orchestrated by EKS."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hpscaler")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
