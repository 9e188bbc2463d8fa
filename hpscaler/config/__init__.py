"""Configuration: users' Karpenter/HyperPod manifests, hpscaler's own settings, and cluster facts.

`load_config(path)` reads a file or directory and returns a `LoadedConfig` in the core's model, or
raises `ConfigError` listing every issue found.

Rules of this package:
- Documents are read in the shape users already have them (NodePools and HyperpodNodeClasses
  unchanged, DescribeCluster output as AWS prints it); pydantic models check their shape
  (`documents`, `aws_documents`, `settings`), `checks` what needs several objects at once.
- Every problem is a `ConfigIssue` naming the file, the object, the field and a fix, and all of them
  are collected before `ConfigError` is raised.
- What leaves this package is the core's model (`hpscaler.model`): the pure core never imports it.
"""

from hpscaler.config.aws_documents import ClusterDocument
from hpscaler.config.checks import check_capacity_type_unchanged
from hpscaler.config.documents import HyperpodNodeClassDocument, NodePoolDocument
from hpscaler.config.durations import DurationError, format_duration, parse_duration, parse_optional_duration
from hpscaler.config.loader import LoadedConfig, default_config_path, load_config, load_documents
from hpscaler.config.settings import HpscalerConfigDocument, Settings
from hpscaler.config.validate import ConfigError, ConfigIssue

__all__ = [
    "ClusterDocument",
    "ConfigError",
    "ConfigIssue",
    "DurationError",
    "HpscalerConfigDocument",
    "HyperpodNodeClassDocument",
    "LoadedConfig",
    "NodePoolDocument",
    "Settings",
    "check_capacity_type_unchanged",
    "default_config_path",
    "format_duration",
    "load_config",
    "load_documents",
    "parse_duration",
    "parse_optional_duration",
]
