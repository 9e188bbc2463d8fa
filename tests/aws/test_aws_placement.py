"""`SpotPlacementScores`: request shape, padding, the configuration cache, stale scores; Spot prices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import moto_ext
import pytest
from aws_harness import FAST, REGION, Recorder
from botocore.session import get_session
from structlog.testing import capture_logs

from hpscaler.aws.placement import SpotPlacementScores, capacity_bucket, pad_instance_types
from hpscaler.aws.session import AwsClients
from hpscaler.backends.protocols import BackendError, PlacementScores

SCORES = {"usw2-az1": 9, "usw2-az2": 3, "usw2-az3": 6}


class FakeClock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sps(clients: AwsClients, clock: FakeClock) -> SpotPlacementScores:
    moto_ext.set_placement_scores(REGION, SCORES)
    return SpotPlacementScores(clients.ec2, REGION, refresh_seconds=600.0, retry=FAST, clock=clock)


def known_types() -> frozenset[str]:
    """Every EC2 instance type of the pinned botocore's model (what the backend pads from)."""
    return frozenset(get_session().get_service_model("ec2").shape_for("InstanceType").enum)


async def test_scores_by_zone_id_from_a_padded_request(sps: SpotPlacementScores) -> None:
    assert isinstance(sps, PlacementScores)

    scores = await sps.scores(["ml.c5.xlarge"], target_capacity=3)

    assert scores == {"usw2-az1": 9.0, "usw2-az2": 3.0, "usw2-az3": 6.0}
    (request,) = moto_ext.placement_requests(REGION)
    # One type alone would score 1 everywhere (moto_ext does as AWS does): padded to three.
    assert request["InstanceTypes"] == ["c5.2xlarge", "c5.large", "c5.xlarge"]
    assert int(request["TargetCapacity"]) == 4  # 3 rounded up to a power of two
    assert str(request["SingleAvailabilityZone"]).lower() == "true"
    assert request["RegionNames"] == [REGION]


async def test_cache_reuses_configurations_within_the_refresh_interval(
    sps: SpotPlacementScores, clock: FakeClock, recorder: Recorder
) -> None:
    await sps.scores(["ml.c5.xlarge"], 3)
    clock.now += 599
    await sps.scores(["ml.c5.xlarge"], 3)
    await sps.scores(["ml.c5.xlarge", "ml.c5.xlarge"], 4)  # the same configuration, normalised
    assert len(recorder.operations("GetSpotPlacementScores")) == 1

    clock.now += 2
    await sps.scores(["ml.c5.xlarge"], 3)
    assert len(recorder.operations("GetSpotPlacementScores")) == 2
    assert len(moto_ext.placement_requests(REGION)) == 2


async def test_stale_scores_when_a_refresh_fails(sps: SpotPlacementScores, clock: FakeClock) -> None:
    first = await sps.scores(["ml.c5.xlarge"], 2)
    moto_ext.set_placement_scores(REGION, {"usw2-az1": 1})
    moto_ext.fail_placement_scores(REGION, "RequestLimitExceeded", times=3)  # every attempt throttled
    clock.now += 601

    with capture_logs() as logs:
        stale = await sps.scores(["ml.c5.xlarge"], 2)

    assert stale == first
    assert len(moto_ext.placement_requests(REGION)) == 4  # 1 + 3 attempts
    (event,) = [e for e in logs if e["event"] == "placement_scores_stale"]
    assert event["log_level"] == "warning"
    assert event["code"] == "RequestLimitExceeded"
    assert event["age"] == pytest.approx(601)
    # A throttled API is left alone for a while ...
    clock.now += 30
    assert await sps.scores(["ml.c5.xlarge"], 2) == first
    assert len(moto_ext.placement_requests(REGION)) == 4
    # ... then asked again.
    clock.now += 31
    assert await sps.scores(["ml.c5.xlarge"], 2) == {"usw2-az1": 1.0}


async def test_a_new_configuration_that_fails_falls_back_to_the_same_types(sps: SpotPlacementScores) -> None:
    known = await sps.scores(["ml.c5.xlarge"], 1)
    moto_ext.fail_placement_scores(REGION, "UnauthorizedOperation")

    assert await sps.scores(["ml.c5.xlarge"], 40) == known
    assert len(moto_ext.placement_requests(REGION)) == 2  # a 4xx is not retried


async def test_failure_with_nothing_cached_raises(sps: SpotPlacementScores) -> None:
    moto_ext.fail_placement_scores(REGION, "UnauthorizedOperation")

    with pytest.raises(BackendError) as raised:
        await sps.scores(["ml.c5.xlarge"], 1)

    assert (raised.value.code, raised.value.retryable) == ("UnauthorizedOperation", False)


def test_padding_uses_neighbouring_sizes_then_sibling_families() -> None:
    known = known_types()
    assert pad_instance_types(["ml.c5.xlarge"], known) == ("c5.2xlarge", "c5.large", "c5.xlarge")
    assert pad_instance_types(["ml.g5.48xlarge", "ml.g5.12xlarge"], known) == (
        "g5.12xlarge",
        "g5.24xlarge",
        "g5.48xlarge",
    )
    # The family's other size, then a sibling family of the same generation.
    assert pad_instance_types(["ml.p5.48xlarge"], known) == ("p5.48xlarge", "p5.4xlarge", "p5e.48xlarge")
    three = ["ml.c5.xlarge", "ml.m5.xlarge", "ml.r5.xlarge"]
    assert pad_instance_types(three, known) == ("c5.xlarge", "m5.xlarge", "r5.xlarge")


def test_padding_without_neighbours_sends_what_it_has() -> None:
    with capture_logs() as logs:
        assert pad_instance_types(["ml.zz9.xlarge"], frozenset()) == ("zz9.xlarge",)
    assert [e["event"] for e in logs] == ["placement_types_below_minimum"]


@pytest.mark.parametrize(("capacity", "bucket"), [(1, 1), (2, 2), (3, 4), (4, 4), (5, 8), (33, 64)])
def test_capacity_buckets(capacity: int, bucket: int) -> None:
    assert capacity_bucket(capacity) == bucket


async def test_spot_prices_latest_per_type_and_zone(sps: SpotPlacementScores, recorder: Recorder) -> None:
    now = datetime.now(UTC).replace(microsecond=0)

    def record(instance_type: str, zone: str, price: str, age_minutes: int) -> dict[str, object]:
        return {
            "InstanceType": instance_type,
            "AvailabilityZone": zone,
            "AvailabilityZoneId": {"us-west-2a": "usw2-az2", "us-west-2b": "usw2-az1"}[zone],
            "ProductDescription": "Linux/UNIX",
            "SpotPrice": price,
            "Timestamp": now - timedelta(minutes=age_minutes),
        }

    moto_ext.set_spot_prices(
        REGION,
        [
            record("c5.xlarge", "us-west-2a", "0.0500", 90),
            record("c5.xlarge", "us-west-2a", "0.0700", 5),
            record("c5.xlarge", "us-west-2b", "0.0600", 30),
            record("m5.large", "us-west-2a", "0.0300", 1),
        ],
    )

    prices = await sps.spot_prices(["ml.c5.xlarge", "m5.large"])

    assert [(p.instance_type, p.zone, p.zone_id, p.price) for p in prices] == [
        ("m5.large", "us-west-2a", "usw2-az2", 0.03),
        ("ml.c5.xlarge", "us-west-2a", "usw2-az2", 0.07),
        ("ml.c5.xlarge", "us-west-2b", "usw2-az1", 0.06),
    ]
    assert prices[1].time == (now - timedelta(minutes=5)).timestamp()
    (call,) = recorder.operations("DescribeSpotPriceHistory")
    assert call.params["InstanceTypes"] == ["c5.xlarge", "m5.large"]
    assert call.params["ProductDescriptions"] == ["Linux/UNIX"]
    assert await sps.spot_prices([]) == []
    # What the daemon reads (`SpotPriceSource`): USD per hour by (type as asked, zone name).
    assert await sps.prices(["ml.c5.xlarge"]) == {
        ("ml.c5.xlarge", "us-west-2a"): 0.07,
        ("ml.c5.xlarge", "us-west-2b"): 0.06,
    }
