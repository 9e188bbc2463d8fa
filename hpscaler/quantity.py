"""Kubernetes resource quantities as integers in canonical units.

CPU is counted in millicores, every other resource in its base unit (bytes for memory and storage,
a plain count for GPUs, EFA interfaces, Neuron devices and pods). Integers keep sums exact.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal, InvalidOperation

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(|n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)$")

CPU = "cpu"
MEMORY = "memory"
EPHEMERAL_STORAGE = "ephemeral-storage"
PODS = "pods"
NVIDIA_GPU = "nvidia.com/gpu"
EFA = "vpc.amazonaws.com/efa"
NEURON = "aws.amazon.com/neuron"


class QuantityError(ValueError):
    """A quantity string that Kubernetes would not accept."""


# Kubernetes stores quantities as int64 (milli-units included); anything larger is not a real request.
MAX_AMOUNT = 2**63 - 1


def parse_decimal(value: object) -> Decimal:
    """Parse a Kubernetes quantity ("500m", "1Gi", "2") into a finite Decimal of base units.

    Anything else (booleans, lists, mappings, NaN, infinities, text that is no quantity) raises
    `QuantityError`; YAML's `.nan` and `.inf` arrive here as floats.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise QuantityError(f"{_show(value)} is not a quantity")
    if isinstance(value, int | float):
        amount = Decimal(str(value))
        if not amount.is_finite():
            raise QuantityError(f"{value!r} is not a quantity (it must be a finite number)")
        return amount
    text = value.strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise QuantityError(f"{value!r} is not a Kubernetes quantity (examples: 500m, 2, 1.5Gi, 256M)")
    number, suffix = match.groups()
    try:
        return Decimal(number) * _SUFFIXES[suffix]
    except InvalidOperation as exc:
        raise QuantityError(f"{value!r} is not a Kubernetes quantity") from exc


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, bool | int | float | str) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def parse_resource(name: str, value: object) -> int:
    """Parse a quantity of resource `name` into canonical integer units (CPU in millicores).

    Rounds up, as the kubelet does when it admits a pod, so a plan never under-counts a request.
    """
    if type(value) is str:
        # 100,000 pods ask for a few dozen distinct quantities: parse each once.
        return _parse_text(name, value)
    return _parse(name, value)


@functools.lru_cache(maxsize=4096)
def _parse_text(name: str, value: str) -> int:
    return _parse(name, value)  # a refused quantity raises, and exceptions are not cached


def _parse(name: str, value: object) -> int:
    amount = parse_decimal(value)
    if amount < 0:
        raise QuantityError(f"{name}: {value!r} is negative")
    if name == CPU:
        amount *= 1000
    if amount > MAX_AMOUNT:
        raise QuantityError(f"{name}: {_show(value)} is larger than Kubernetes allows (2^63-1 units)")
    return int(amount.to_integral_value(rounding="ROUND_CEILING"))


def format_resource(name: str, amount: int) -> str:
    """Render canonical units back as a readable Kubernetes quantity."""
    if name == CPU:
        return f"{amount // 1000}" if amount % 1000 == 0 else f"{amount}m"
    if name in (MEMORY, EPHEMERAL_STORAGE):
        for suffix, factor in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
            if amount >= factor and amount % factor == 0:
                return f"{amount // factor}{suffix}"
        return str(amount)
    return str(amount)
