"""An IMDSv2 client for the three notices the node agent watches, modelled on aws-node-termination-handler's
IMDS mode (pkg/ec2metadata/ec2metadata.go).

- A session token comes from `PUT /latest/api/token` (header `X-aws-ec2-metadata-token-ttl-seconds`)
  and goes with every read (`X-aws-ec2-metadata-token`); a 401 means it expired: get a new one and
  read again, once.
- `GET /latest/meta-data/spot/instance-action`: `{"action": "terminate|stop|hibernate", "time":
  "2017-09-18T08:22:00Z"}`, 404 while there is none (EC2 User Guide, "Spot Instance interruption
  notices").
- `GET /latest/meta-data/events/recommendations/rebalance`: `{"noticeTime": "..."}`, 404 while none.
- `GET /latest/meta-data/events/maintenance/scheduled`: a JSON list of `{"Code", "Description",
  "EventId", "NotBefore", "NotAfter", "State"}`; dates like "21 Jan 2019 09:00:43 GMT".

A pod reaches IMDSv2 only if the instance's metadata hop limit is at least 2 (the container's
network namespace is one more hop): see the agent section of the README.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp

from hpscaler.agent.notice import Notice
from hpscaler.backends.types import InterruptionKind
from hpscaler.timestamps import parse_timestamp

DEFAULT_URL = "http://169.254.169.254"
SPOT_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
SCHEDULED_PATH = "/latest/meta-data/events/maintenance/scheduled"
TOKEN_PATH = "/latest/api/token"
TOKEN_TTL_SECONDS = 21600


class ImdsUnavailable(Exception):
    """IMDS could not be reached (timeout, connection refused, hop limit too low, 5xx)."""


class ImdsClient:
    """Reads notices from IMDSv2 with one aiohttp session; every call is bounded by `timeout_seconds`."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str = DEFAULT_URL, timeout_seconds: float = 2.0
    ):
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._token = ""
        self._token_expires = 0.0

    async def _fetch_token(self) -> str:
        headers = {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)}
        async with self._session.put(self.base_url + TOKEN_PATH, headers=headers, timeout=self._timeout) as r:
            if r.status != 200:
                raise ImdsUnavailable(f"PUT {TOKEN_PATH}: HTTP {r.status}")
            self._token = (await r.text()).strip()
        # Renew well before EC2 would refuse it.
        self._token_expires = time.monotonic() + TOKEN_TTL_SECONDS - 60
        return self._token

    async def read(self, path: str) -> Any:
        """The JSON at `path`, or None when IMDS has nothing there (404)."""
        try:
            for attempt in range(2):
                token = self._token if time.monotonic() < self._token_expires else await self._fetch_token()
                headers = {"X-aws-ec2-metadata-token": token}
                async with self._session.get(
                    self.base_url + path, headers=headers, timeout=self._timeout
                ) as r:
                    if r.status == 401 and attempt == 0:
                        self._token_expires = 0.0  # expired or revoked: a new token, then read again
                        continue
                    if r.status == 404:
                        return None
                    if r.status != 200:
                        raise ImdsUnavailable(f"GET {path}: HTTP {r.status}")
                    return json.loads(await r.text())
            raise ImdsUnavailable(f"GET {path}: HTTP 401 with a fresh token")
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise ImdsUnavailable(f"{path}: {type(exc).__name__}: {exc}") from exc

    async def notices(self, now: float) -> list[Notice]:
        """Every notice IMDS holds about this instance now."""
        found: list[Notice] = []
        spot = await self.read(SPOT_PATH)
        if isinstance(spot, dict):
            deadline = parse_timestamp(spot.get("time"))
            found.append(
                Notice(
                    InterruptionKind.SPOT_INTERRUPTION, now, deadline, f"instance-action {spot.get('action')}"
                )
            )
        rebalance = await self.read(REBALANCE_PATH)
        if isinstance(rebalance, dict):
            noticed = parse_timestamp(rebalance.get("noticeTime")) or now
            found.append(Notice(InterruptionKind.REBALANCE, noticed, None, "rebalance recommendation"))
        scheduled = await self.read(SCHEDULED_PATH)
        for event in scheduled if isinstance(scheduled, list) else []:
            if not isinstance(event, dict) or event.get("State") != "active":
                continue  # canceled and completed events are history
            found.append(
                Notice(
                    InterruptionKind.SCHEDULED_CHANGE,
                    now,
                    parse_timestamp(event.get("NotBefore")),
                    f"{event.get('Code', '')} {event.get('EventId', '')}".strip(),
                )
            )
        return found
