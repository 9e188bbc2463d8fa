"""The instance catalogue: specs, allocatable resources, labels and default prices of HyperPod types.

Rules of this package:
- Pure data: `data/instance_types.json` is written by `_generate.py`, never by hand; loading it
  reads only that package file.
- Allocatable is what the EKS AMI's kubelet leaves (as Karpenter estimates it), so the scheduler
  plans with what the node will report; an unknown type is an `UnknownInstanceType` with near-miss
  suggestions, never a guess.
"""

from hpscaler.catalogue.catalogue import (
    Catalogue,
    InstanceSpec,
    PriceOverride,
    UnknownInstanceType,
    load_catalogue,
)

__all__ = ["Catalogue", "InstanceSpec", "PriceOverride", "UnknownInstanceType", "load_catalogue"]
