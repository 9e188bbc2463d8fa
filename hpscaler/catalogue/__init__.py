"""The instance catalogue: specs, allocatable resources, labels and default prices of HyperPod types."""

from hpscaler.catalogue.catalogue import (
    Catalogue,
    InstanceSpec,
    PriceOverride,
    UnknownInstanceType,
    load_catalogue,
)

__all__ = ["Catalogue", "InstanceSpec", "PriceOverride", "UnknownInstanceType", "load_catalogue"]
