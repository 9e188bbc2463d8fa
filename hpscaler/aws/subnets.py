"""Availability zones of subnets, from EC2 DescribeSubnets, cached for the daemon's lifetime."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from hpscaler.aws.retry import RetryPolicy, call_aws

log = structlog.get_logger("hpscaler.aws")

_IDS_PER_CALL = 200  # well under EC2's request-size limits


class SubnetZones:
    """Subnet id -> (zone name, zone id). A subnet never changes zone, so nothing expires."""

    def __init__(self, ec2: Any, retry: RetryPolicy) -> None:
        self._ec2 = ec2
        self._retry = retry
        self._zones: dict[str, tuple[str, str]] = {}

    async def resolve(self, subnet_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Zones of the subnets asked for; only subnets not seen before cost a request."""
        wanted = list(dict.fromkeys(subnet_ids))
        missing = [s for s in wanted if s not in self._zones]
        for start in range(0, len(missing), _IDS_PER_CALL):
            await self._fetch(missing[start : start + _IDS_PER_CALL])
        unknown = [s for s in missing if s not in self._zones]
        if unknown:
            log.warning("subnets_not_found", subnets=unknown)
        return {s: self._zones[s] for s in wanted if s in self._zones}

    async def _fetch(self, subnet_ids: list[str]) -> None:
        params: dict[str, Any] = {"SubnetIds": subnet_ids}
        while True:
            page = await call_aws(self._ec2, "DescribeSubnets", params, self._retry)
            for subnet in page.get("Subnets", []):
                self._zones[subnet["SubnetId"]] = (
                    str(subnet.get("AvailabilityZone", "")),
                    str(subnet.get("AvailabilityZoneId", "")),
                )
            token = page.get("NextToken")
            if not token:
                return
            params = {**params, "NextToken": token}
