"""HyperPod instance types: capacity, allocatable resources, well-known labels and prices.

The catalogue ships as package data (``data/instance_types.json``, written by ``_generate.py``) and
covers every name in botocore's SageMaker ``ClusterInstanceType`` enum.

Capacity is the nominal instance: vCPUs (as millicores), memory, a 100 GiB root volume as
ephemeral storage, max pods (EKS ENI formula capped at 110 below 30 vCPUs and 250 above), and the
GPUs, Neuron devices and EFA interfaces the instance has. No VM memory overhead is subtracted.

Allocatable is capacity minus kube-reserved, system-reserved and the hard eviction thresholds, the way
the EKS AMI configures the kubelet (and Karpenter estimates it):

* CPU, kube-reserved: 6% of the first core, 1% of the second, 0.5% each of cores 3 and 4 and 0.25% of
  every core above 4. Summed exactly in tenths of a millicore, then rounded down to whole millicores
  (8 vCPUs: 60 + 10 + 5 + 5 + 4 x 2.5 = 90m, so 7910m allocatable).
* Memory, kube-reserved: 11 MiB per pod the node can hold (max pods) + 255 MiB.
  Eviction threshold: 100 MiB.
* Ephemeral storage, kube-reserved: 1 GiB. Eviction threshold: 10% of capacity.
* System-reserved: nothing (the EKS AMI default).
* Pods, GPUs, Neuron devices and EFA interfaces: fully allocatable.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from importlib import resources

from hpscaler.model import (
    LABEL_ARCH,
    LABEL_INSTANCE_CPU,
    LABEL_INSTANCE_FAMILY,
    LABEL_INSTANCE_GPU_COUNT,
    LABEL_INSTANCE_GPU_NAME,
    LABEL_INSTANCE_MEMORY,
    LABEL_INSTANCE_TYPE,
    LABEL_OS,
    CapacityType,
)
from hpscaler.quantity import CPU, EFA, EPHEMERAL_STORAGE, MEMORY, NEURON, NVIDIA_GPU, PODS

MIB = 1 << 20
GIB = 1 << 30
ROOT_VOLUME_BYTES = 100 * GIB
"""Ephemeral-storage capacity: HyperPod's default root volume is assumed to be 100 GiB."""
KUBE_RESERVED_MEMORY_PER_POD_MIB = 11
KUBE_RESERVED_MEMORY_BASE_MIB = 255
EVICTION_MEMORY_MIB = 100
KUBE_RESERVED_EPHEMERAL_BYTES = 1 * GIB
EVICTION_EPHEMERAL_PERCENT = 10

ARCHES = frozenset({"amd64", "arm64"})
DATA_FILE = "instance_types.json"


def _kube_reserved_cpu_millicores(vcpu: int) -> int:
    # Tenths of a millicore keep 0.25% of a core (2.5m) exact before the single rounding step.
    tenths = (
        600 * min(vcpu, 1)
        + 100 * min(max(vcpu - 1, 0), 1)
        + 50 * min(max(vcpu - 2, 0), 2)
        + 25 * max(vcpu - 4, 0)
    )
    return tenths // 10


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """One instance type's hardware facts and default hourly prices (USD)."""

    name: str
    family: str
    vcpu: int
    memory_mib: int
    gpus: int
    gpu_name: str
    gpu_memory_mib: int
    neuron_devices: int
    efa: int
    max_pods: int
    arch: str
    on_demand_price: float
    spot_price: float

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("instance type name is empty")
        if self.vcpu <= 0 or self.memory_mib <= 0 or self.max_pods <= 0:
            raise ValueError(f"{self.name}: vcpu, memory_mib and max_pods must be positive")
        if min(self.gpus, self.gpu_memory_mib, self.neuron_devices, self.efa) < 0:
            raise ValueError(f"{self.name}: device counts must not be negative")
        if self.arch not in ARCHES:
            raise ValueError(f"{self.name}: arch {self.arch!r} is not one of {sorted(ARCHES)}")
        _check_price(self.name, "on_demand_price", self.on_demand_price)
        _check_price(self.name, "spot_price", self.spot_price)

    def capacity(self) -> dict[str, int]:
        """Node capacity in canonical units; device resources appear only when the instance has them."""
        resources_: dict[str, int] = {
            CPU: self.vcpu * 1000,
            MEMORY: self.memory_mib * MIB,
            EPHEMERAL_STORAGE: ROOT_VOLUME_BYTES,
            PODS: self.max_pods,
        }
        if self.gpus > 0:
            resources_[NVIDIA_GPU] = self.gpus
        if self.neuron_devices > 0:
            resources_[NEURON] = self.neuron_devices
        if self.efa > 0:
            resources_[EFA] = self.efa
        return resources_

    def allocatable(self) -> dict[str, int]:
        """Capacity minus kube-reserved, system-reserved and eviction thresholds (see the module doc)."""
        allocatable = self.capacity()
        allocatable[CPU] -= _kube_reserved_cpu_millicores(self.vcpu)
        reserved_memory_mib = (
            KUBE_RESERVED_MEMORY_PER_POD_MIB * self.max_pods
            + KUBE_RESERVED_MEMORY_BASE_MIB
            + EVICTION_MEMORY_MIB
        )
        allocatable[MEMORY] -= reserved_memory_mib * MIB
        allocatable[EPHEMERAL_STORAGE] -= (
            KUBE_RESERVED_EPHEMERAL_BYTES + ROOT_VOLUME_BYTES * EVICTION_EPHEMERAL_PERCENT // 100
        )
        return allocatable

    def price(self, capacity_type: CapacityType) -> float:
        """USD per hour for an instance of this type bought as `capacity_type`."""
        if capacity_type is CapacityType.SPOT:
            return self.spot_price
        return self.on_demand_price

    def labels(self) -> dict[str, str]:
        """The well-known labels a node of this type carries.

        GPU labels are set only on GPU types, as Karpenter does, so `DoesNotExist` requirements on them
        select CPU-only types.
        """
        labels = {
            LABEL_INSTANCE_TYPE: self.name,
            LABEL_ARCH: self.arch,
            LABEL_OS: "linux",
            LABEL_INSTANCE_FAMILY: self.family,
            LABEL_INSTANCE_CPU: str(self.vcpu),
            LABEL_INSTANCE_MEMORY: str(self.memory_mib),
        }
        if self.gpus > 0:
            labels[LABEL_INSTANCE_GPU_COUNT] = str(self.gpus)
            labels[LABEL_INSTANCE_GPU_NAME] = self.gpu_name
        return labels


def _check_price(name: str, field_name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{name}: {field_name} must be a finite, non-negative USD/hour amount, got {value!r}"
        )


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """Replacement hourly prices for one instance type; None keeps the catalogue's default."""

    on_demand: float | None = None
    spot: float | None = None


class UnknownInstanceType(KeyError):
    """An instance type name the catalogue does not know."""

    def __init__(self, name: str, known: Iterable[str] = ()) -> None:
        self.name = name
        self.suggestions = _suggest(name, tuple(known))
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        self.message = f"unknown instance type {name!r}{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:
        # KeyError would otherwise print the repr of the message, quotes and all.
        return self.message


def _suggest(name: str, known: tuple[str, ...]) -> tuple[str, ...]:
    lowered = name.strip().lower()
    first: list[str] = []
    # HyperPod names carry the "ml." prefix; EC2 users often leave it out.
    if not lowered.startswith("ml.") and f"ml.{lowered}" in known:
        first.append(f"ml.{lowered}")
    elif lowered != name and lowered in known:
        first.append(lowered)
    close = difflib.get_close_matches(lowered, known, n=3, cutoff=0.6)
    return tuple(dict.fromkeys([*first, *close]))[:3]


class Catalogue:
    """An immutable set of instance types, looked up by name."""

    __slots__ = ("_specs",)

    def __init__(self, specs: Iterable[InstanceSpec] = ()) -> None:
        by_name: dict[str, InstanceSpec] = {}
        for spec in specs:
            if spec.name in by_name:
                raise ValueError(f"instance type {spec.name} appears twice")
            by_name[spec.name] = spec
        self._specs: dict[str, InstanceSpec] = dict(sorted(by_name.items()))

    @classmethod
    def from_specs(cls, specs: Iterable[InstanceSpec]) -> Catalogue:
        """A catalogue of the given specs (tests and benchmarks use synthetic types)."""
        return cls(specs)

    def get(self, name: str) -> InstanceSpec:
        """The spec of `name`; raises UnknownInstanceType (a KeyError) with close-name suggestions."""
        spec = self._specs.get(name)
        if spec is None:
            raise UnknownInstanceType(name, self._specs)
        return spec

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._specs

    def __iter__(self) -> Iterator[InstanceSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"<Catalogue of {len(self._specs)} instance types>"

    def names(self) -> tuple[str, ...]:
        """All instance type names, sorted."""
        return tuple(self._specs)

    def with_prices(self, overrides: Mapping[str, PriceOverride]) -> Catalogue:
        """A new catalogue with some prices replaced; unknown names raise UnknownInstanceType."""
        specs = dict(self._specs)
        for name, override in overrides.items():
            spec = specs.get(name)
            if spec is None:
                raise UnknownInstanceType(name, self._specs)
            specs[name] = replace(
                spec,
                on_demand_price=spec.on_demand_price if override.on_demand is None else override.on_demand,
                spot_price=spec.spot_price if override.spot is None else override.spot,
            )
        return Catalogue(specs.values())


@functools.cache
def load_catalogue() -> Catalogue:
    """The packaged catalogue of every HyperPod instance type (parsed once, then cached)."""
    data_file = resources.files(__package__ or "hpscaler.catalogue") / "data" / DATA_FILE
    return Catalogue(_specs_from_json(json.loads(data_file.read_text(encoding="utf-8"))))


def _specs_from_json(document: object) -> list[InstanceSpec]:
    if not isinstance(document, dict) or not isinstance(document.get("instanceTypes"), list):
        raise ValueError(f"{DATA_FILE}: expected an object with an instanceTypes list")
    return [_spec_from_json(entry) for entry in document["instanceTypes"]]


def _spec_from_json(entry: object) -> InstanceSpec:
    if not isinstance(entry, dict):
        raise ValueError(f"{DATA_FILE}: instance type entry {entry!r} is not an object")
    label = str(entry.get("name", "<unnamed>"))

    def text(key: str) -> str:
        value = entry.get(key)
        if not isinstance(value, str):
            raise ValueError(f"{DATA_FILE}: {label}.{key} must be a string, got {value!r}")
        return value

    def integer(key: str) -> int:
        value = entry.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{DATA_FILE}: {label}.{key} must be an integer, got {value!r}")
        return value

    def number(key: str) -> float:
        value = entry.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{DATA_FILE}: {label}.{key} must be a number, got {value!r}")
        return float(value)

    return InstanceSpec(
        name=text("name"),
        family=text("family"),
        vcpu=integer("vcpu"),
        memory_mib=integer("memoryMiB"),
        gpus=integer("gpus"),
        gpu_name=text("gpuName"),
        gpu_memory_mib=integer("gpuMemoryMiB"),
        neuron_devices=integer("neuronDevices"),
        efa=integer("efa"),
        max_pods=integer("maxPods"),
        arch=text("arch"),
        on_demand_price=number("onDemandPrice"),
        spot_price=number("spotPrice"),
    )
