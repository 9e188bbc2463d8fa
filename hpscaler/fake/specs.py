"""Instance-type facts the in-memory world needs: from the catalogue, or given directly by tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hpscaler.catalogue import Catalogue, UnknownInstanceType, load_catalogue
from hpscaler.model import CapacityType


class InstanceSpecLike(Protocol):
    """What the fakes need of a catalogue `InstanceSpec` (which satisfies it)."""

    def allocatable(self) -> dict[str, int]:
        """Allocatable resources of a node of this type, canonical units."""
        ...

    def labels(self) -> dict[str, str]:
        """Well-known labels a node of this type carries."""
        ...

    def price(self, capacity_type: CapacityType) -> float:
        """USD per hour."""
        ...


@dataclass(frozen=True, slots=True)
class StaticSpec:
    """Instance type facts given directly, for tests that must not depend on the catalogue."""

    resources: Mapping[str, int]
    on_demand_price: float
    spot_price: float
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    def allocatable(self) -> dict[str, int]:
        """The resources given."""
        return dict(self.resources)

    def labels(self) -> dict[str, str]:
        """The labels given."""
        return dict(self.extra_labels)

    def price(self, capacity_type: CapacityType) -> float:
        """The price given for the capacity type."""
        return self.spot_price if capacity_type == CapacityType.SPOT else self.on_demand_price


def resolve_specs(
    instance_types: Sequence[str],
    specs: Mapping[str, InstanceSpecLike] | None = None,
    catalogue: Catalogue | None = None,
) -> dict[str, InstanceSpecLike]:
    """Specs for every type: the injected ones first, the rest from the catalogue (packaged by default)."""
    resolved: dict[str, InstanceSpecLike] = dict(specs or {})
    missing = sorted({t for t in instance_types if t not in resolved})
    if missing:
        catalogue = catalogue if catalogue is not None else load_catalogue()
        for name in missing:
            try:
                resolved[name] = catalogue.get(name)
            except UnknownInstanceType as error:
                raise ValueError(f"{error}; pass its facts with specs=") from error
    return resolved
