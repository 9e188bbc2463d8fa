"""`PlacementScores` on EC2 GetSpotPlacementScores, with a cache shaped by the API's limits; Spot prices.

What the API asks of its callers, and how this module answers:

* Fewer than three instance types always score low (EC2 recommends at least three; one or two
  read as an inflexible request). HyperPod groups often have one type, so the request is padded
  with neighbouring sizes of the same family (c5.xlarge -> c5.large, c5.2xlarge), then with sibling
  families of the same generation (p5.48xlarge -> p5e.48xlarge). Those share hardware pools in a
  zone, so the zones' order stays meaningful even though the absolute score is optimistic.
* EC2 may refuse *new* request configurations for 24 hours when an account asks for many, while
  configurations already used keep working. So the configuration is normalised (sorted types,
  target capacity rounded up to a power of two), each one is re-asked at most once per refresh
  interval, and a failed refresh keeps serving the last scores (stale) instead of trying new ones.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog

from hpscaler.aws.retry import RetryPolicy, call_aws
from hpscaler.backends.protocols import BackendError

log = structlog.get_logger("hpscaler.aws")

MIN_INSTANCE_TYPES = 3
_FAMILY = re.compile(r"^([a-z]+\d+)([a-z0-9-]*)$")  # "p5en" -> generation "p5", variant "en"
_SMALL_SIZES = {"nano": -3.0, "micro": -2.0, "small": -1.0, "medium": 0.0, "large": 1.0, "xlarge": 2.0}


def ec2_instance_type(instance_type: str) -> str:
    """SageMaker's "ml.c5.xlarge" is EC2's "c5.xlarge"."""
    return instance_type.removeprefix("ml.")


def _size_rank(size: str) -> float | None:
    """log2 of the relative size (large=1, xlarge=2, 2xlarge=3); None for bare metal (never padding)."""
    if size in _SMALL_SIZES:
        return _SMALL_SIZES[size]
    match = re.fullmatch(r"(\d+)xlarge", size)
    return 2.0 + math.log2(int(match.group(1))) if match else None


def _generation(family: str) -> str:
    match = _FAMILY.match(family)
    return match.group(1) if match else family


def pad_instance_types(
    instance_types: Sequence[str], known: Collection[str], minimum: int = MIN_INSTANCE_TYPES
) -> tuple[str, ...]:
    """EC2 types for the request, padded to `minimum` with neighbours that exist in `known`; sorted."""
    chosen = list(dict.fromkeys(ec2_instance_type(t) for t in instance_types))
    if len(chosen) >= minimum:
        return tuple(sorted(chosen))
    by_family: dict[str, list[str]] = {}
    for name in known:
        family, _, size = name.partition(".")
        if _size_rank(size) is not None:
            by_family.setdefault(family, []).append(name)

    def nearest(family: str, rank: float) -> list[str]:
        members = by_family.get(family, [])

        # Nearest size first; on a tie the larger one (it still fits what the smaller one would).
        def distance(name: str) -> tuple[float, float]:
            other = _size_rank(name.partition(".")[2]) or 0.0
            return abs(other - rank), -other

        return sorted(members, key=distance)

    originals = [(t.partition(".")[0], _size_rank(t.partition(".")[2]) or 0.0) for t in chosen]
    candidates: list[str] = []
    for family, rank in originals:  # same family first: the closest hardware
        candidates += nearest(family, rank)
    for family, rank in originals:  # then siblings of the same generation
        siblings = sorted(f for f in by_family if f != family and _generation(f) == _generation(family))
        for sibling in siblings:
            candidates += nearest(sibling, rank)[:1]
    for candidate in candidates:
        if len(chosen) >= minimum:
            break
        if candidate not in chosen:
            chosen.append(candidate)
    if len(chosen) < minimum:
        log.info("placement_types_below_minimum", instance_types=chosen, why="no more neighbours known")
    return tuple(sorted(chosen))


def capacity_bucket(target_capacity: int) -> int:
    """The next power of two: nearby capacities share one request configuration."""
    return 1 << max(0, target_capacity - 1).bit_length()


@dataclass(frozen=True, slots=True)
class SpotPrice:
    """The latest Spot price of one instance type in one zone."""

    instance_type: str  # as asked (ml.* stays ml.*)
    zone: str
    zone_id: str
    price: float  # USD per hour
    time: float  # epoch seconds the price took effect


@dataclass(slots=True)
class _Entry:
    scores: dict[str, float]
    fetched: float
    next_try: float


def _known_types(ec2: Any) -> frozenset[str]:
    """Every EC2 instance type botocore's model lists (an enum of over a thousand names)."""
    try:
        return frozenset(ec2.meta.service_model.shape_for("InstanceType").enum)
    except Exception:  # a model without the shape: pad nothing rather than fail
        return frozenset()


class SpotPlacementScores:
    """Scores per availability zone id, cached per request configuration for `refresh_seconds`."""

    def __init__(
        self,
        ec2: Any,
        region: str,
        *,
        refresh_seconds: float = 600.0,
        failure_backoff_seconds: float = 60.0,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        known_types: Collection[str] | None = None,
    ) -> None:
        self._ec2 = ec2
        self.region = region
        self.refresh_seconds = refresh_seconds
        self.failure_backoff_seconds = failure_backoff_seconds
        self._retry = retry if retry is not None else RetryPolicy()
        self._clock = clock
        self._known = frozenset(known_types) if known_types is not None else _known_types(ec2)
        self._cache: dict[tuple[tuple[str, ...], int], _Entry] = {}
        self._lock = anyio.Lock()  # one refresh at a time: concurrent callers share its answer

    def configuration(
        self, instance_types: Sequence[str], target_capacity: int
    ) -> tuple[tuple[str, ...], int]:
        """The normalised request configuration (padded, sorted EC2 types; bucketed capacity)."""
        return pad_instance_types(instance_types, self._known), capacity_bucket(max(1, target_capacity))

    async def scores(self, instance_types: Sequence[str], target_capacity: int) -> Mapping[str, float]:
        """Score (1-10) per zone id; cached, or stale when a refresh fails and older scores exist."""
        key = self.configuration(instance_types, target_capacity)
        async with self._lock:
            now = self._clock()
            entry = self._cache.get(key)
            if entry is not None and now < entry.next_try:
                return dict(entry.scores)
            try:
                scores = await self._fetch(*key)
            except BackendError as exc:
                return self._fallback(key, now, exc)
            self._cache[key] = _Entry(scores, now, now + self.refresh_seconds)
            log.info("placement_scores_fetched", instance_types=key[0], capacity=key[1], scores=scores)
            return dict(scores)

    def _fallback(
        self, key: tuple[tuple[str, ...], int], now: float, exc: BackendError
    ) -> Mapping[str, float]:
        entry = self._cache.get(key)
        if entry is None:
            # A configuration never answered: another capacity for the same types is the best guess.
            same_types = [(abs(k[1] - key[1]), k) for k in self._cache if k[0] == key[0]]
            if not same_types:
                raise exc
            entry = self._cache[min(same_types)[1]]
        else:
            entry.next_try = now + self.failure_backoff_seconds  # do not hammer a throttled API
        log.warning(
            "placement_scores_stale",
            instance_types=key[0],
            capacity=key[1],
            age=round(now - entry.fetched, 1),
            code=exc.code,
            error=str(exc),
        )
        return dict(entry.scores)

    async def _fetch(self, types: tuple[str, ...], capacity: int) -> dict[str, float]:
        params: dict[str, Any] = {
            "InstanceTypes": list(types),
            "TargetCapacity": capacity,
            "SingleAvailabilityZone": True,
            "RegionNames": [self.region],
        }
        scores: dict[str, float] = {}
        while True:
            page = await call_aws(self._ec2, "GetSpotPlacementScores", params, self._retry)
            for item in page.get("SpotPlacementScores") or []:
                zone_id = item.get("AvailabilityZoneId")
                if zone_id and item.get("Region", self.region) == self.region:
                    scores[str(zone_id)] = float(item.get("Score", 0))
            token = page.get("NextToken")
            if not token:
                return scores
            params = {**params, "NextToken": token}

    async def prices(self, instance_types: Sequence[str]) -> dict[tuple[str, str], float]:
        """`SpotPriceSource`: USD per hour by (instance type as asked, zone name)."""
        return {
            (p.instance_type, p.zone): p.price for p in await self.spot_prices(instance_types) if p.price > 0
        }

    async def spot_prices(self, instance_types: Sequence[str]) -> list[SpotPrice]:
        """Current Linux Spot price per (type, zone) from DescribeSpotPriceHistory, latest record wins."""
        asked = {ec2_instance_type(t): t for t in instance_types}
        if not asked:
            return []
        params: dict[str, Any] = {
            "InstanceTypes": sorted(asked),
            "ProductDescriptions": ["Linux/UNIX"],
            # From "now": EC2 then returns just the price in effect, not hours of history.
            "StartTime": datetime.now(UTC),
            "MaxResults": 1000,
        }
        latest: dict[tuple[str, str], SpotPrice] = {}
        while True:
            page = await call_aws(self._ec2, "DescribeSpotPriceHistory", params, self._retry)
            for item in page.get("SpotPriceHistory") or []:
                when = item.get("Timestamp")
                price = SpotPrice(
                    instance_type=asked.get(str(item.get("InstanceType")), str(item.get("InstanceType"))),
                    zone=str(item.get("AvailabilityZone", "")),
                    zone_id=str(item.get("AvailabilityZoneId", "")),
                    price=float(item.get("SpotPrice", "nan")),
                    time=when.timestamp() if isinstance(when, datetime) else 0.0,
                )
                key = (price.instance_type, price.zone)
                if key not in latest or price.time > latest[key].time:
                    latest[key] = price
            token = page.get("NextToken")
            if not token:
                break
            params = {**params, "NextToken": token}
        return [latest[k] for k in sorted(latest)]
