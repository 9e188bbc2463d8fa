"""What moto 5.2.5 lacks of EC2 for the AWS backend's tests: GetSpotPlacementScores (scores per zone
id set by the test, injectable failures, and fewer than 3 instance types scoring 1 everywhere, as the
EC2 user guide's "Spot placement score" limitations say) and settable DescribeSpotPriceHistory
records. The state lives on moto's EC2 backend, so a reset wipes it.
"""

from __future__ import annotations

import copy
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.responses import EC2Response

ACCOUNT = "123456789012"  # moto's default account


def _ec2_state(region: str) -> dict[str, Any]:
    backend = ec2_backends[ACCOUNT][region]
    if not hasattr(backend, "hps_state"):
        backend.hps_state = {"scores": {}, "fail": [], "sps_requests": [], "prices": None}
    state: dict[str, Any] = backend.hps_state
    return state


def set_placement_scores(region: str, scores: dict[str, int]) -> None:
    """Score per zone id that GetSpotPlacementScores answers (for requests of 3+ types)."""
    _ec2_state(region)["scores"] = dict(scores)


def fail_placement_scores(region: str, code: str, times: int = 1) -> None:
    """Make the next `times` GetSpotPlacementScores requests fail with error `code`."""
    _ec2_state(region)["fail"].extend([code] * times)


def placement_requests(region: str) -> list[dict[str, Any]]:
    """Every GetSpotPlacementScores request that reached the server, in order."""
    requests: list[dict[str, Any]] = _ec2_state(region)["sps_requests"]
    return requests


def set_spot_prices(region: str, prices: list[dict[str, Any]]) -> None:
    """SpotPriceHistory records DescribeSpotPriceHistory answers with (filtered by type)."""
    _ec2_state(region)["prices"] = copy.deepcopy(prices)


def get_spot_placement_scores(self: EC2Response) -> ActionResult:
    """Scores per zone id as set by the test; a request of fewer than 3 types scores 1 everywhere."""
    state = _ec2_state(self.region)
    types = list(self._get_param("InstanceTypes") or [])
    state["sps_requests"].append(
        {
            "InstanceTypes": types,
            "TargetCapacity": self._get_param("TargetCapacity"),
            "SingleAvailabilityZone": self._get_param("SingleAvailabilityZone"),
            "RegionNames": list(self._get_param("RegionNames") or []),
        }
    )
    if state["fail"]:
        code = state["fail"].pop(0)
        raise EC2ClientError(code, f"injected failure {code}")
    low = len(set(types)) < 3
    scores = [
        {"Region": self.region, "AvailabilityZoneId": zone_id, "Score": 1 if low else score}
        for zone_id, score in sorted(state["scores"].items())
    ]
    return ActionResult({"SpotPlacementScores": scores})


_moto_spot_prices = EC2Response.describe_spot_price_history


def describe_spot_price_history(self: EC2Response) -> ActionResult:
    """The test's price records when set, else moto's constant ones."""
    prices = _ec2_state(self.region)["prices"]
    if prices is None:
        return _moto_spot_prices(self)
    wanted = set(self._get_param("InstanceTypes") or [])
    return ActionResult(
        {"SpotPriceHistory": [p for p in prices if not wanted or p["InstanceType"] in wanted]}
    )


def install_ec2() -> None:
    """Patch moto's EC2 responses (called once, by `moto_ext.install`)."""
    EC2Response.get_spot_placement_scores = get_spot_placement_scores
    EC2Response.describe_spot_price_history = describe_spot_price_history
