"""Billing of the in-memory HyperPod's instances: per instance, from launch until it shuts down.

EC2 bills an instance from launch until it stops running; HyperPod adds no charge of its own per
node. The fake keeps one record per instance at its own price (Spot or On-Demand) and the On-Demand
price of the same type, so a report can show what Spot saved.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hpscaler.model import CapacityType


@dataclass(slots=True)
class MeterRecord:
    """Billing of one instance: from launch until it shuts down or terminates."""

    logical_id: str
    instance_id: str
    group: str
    instance_type: str
    zone: str
    capacity_type: CapacityType
    price_per_hour: float
    on_demand_price_per_hour: float
    start: float
    end: float | None = None
    end_reason: str = ""

    def seconds(self, now: float) -> float:
        """Billed seconds so far."""
        return (self.end if self.end is not None else now) - self.start

    def stop(self, now: float, reason: str) -> None:
        """End billing (once: a later stop changes nothing)."""
        if self.end is None:
            self.end, self.end_reason = now, reason


class Meter:
    """Every instance's billing record, in launch order."""

    def __init__(self) -> None:
        self._records: list[MeterRecord] = []

    def start(self, record: MeterRecord) -> MeterRecord:
        """Start billing an instance."""
        self._records.append(record)
        return record

    def records(self) -> list[MeterRecord]:
        """Copies of every record."""
        return [replace(m) for m in self._records]

    def cost(self, now: float) -> float:
        """USD billed so far at each instance's own price."""
        return sum(m.seconds(now) * m.price_per_hour for m in self._records) / 3600.0

    def on_demand_equivalent_cost(self, now: float) -> float:
        """What the same instance-seconds would have cost On-Demand."""
        return sum(m.seconds(now) * m.on_demand_price_per_hour for m in self._records) / 3600.0
