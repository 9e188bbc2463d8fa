"""A local fake of the EC2 instance metadata service (IMDSv2), for the node agent's tests.

It serves what the EC2 User Guide documents ("Use IMDSv2", "Spot Instance interruption notices",
"Rebalance recommendations", "Scheduled events"):

- `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (1..21600) returns a token;
  without the header, 400.
- Every `GET` needs a valid `X-aws-ec2-metadata-token`: none or an unknown/expired one is 401.
- `spot/instance-action` and `events/recommendations/rebalance` are 404 until set;
  `events/maintenance/scheduled` is `[]` until set.

Faults a test can switch on: `expire_tokens()` (the next read gets 401), `hang` (no answer: the
client's timeout fires), `status` (every answer is that HTTP status).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from aiohttp import web

SPOT = "/latest/meta-data/spot/instance-action"
REBALANCE = "/latest/meta-data/events/recommendations/rebalance"
SCHEDULED = "/latest/meta-data/events/maintenance/scheduled"


class FakeImds:
    """`async with FakeImds() as imds:` serves on 127.0.0.1 at `imds.url`."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {SCHEDULED: []}
        self.tokens: set[str] = set()
        self.hang = False
        self.status: int | None = None
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def set(self, path: str, document: Any) -> None:
        """Serve `document` (JSON) at `path`; None makes it 404 again (or [] for scheduled events)."""
        if document is None:
            self.documents.pop(path, None)
            if path == SCHEDULED:
                self.documents[SCHEDULED] = []
        else:
            self.documents[path] = document

    def expire_tokens(self) -> None:
        """Every token handed out so far stops working."""
        self.tokens.clear()

    async def __aenter__(self) -> FakeImds:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        response = await self._answer(request)
        self.requests.append((request.method, request.path, response.status))
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        if self.hang:
            await asyncio.sleep(3600)
        if self.status is not None:
            return web.Response(status=self.status)
        if request.method == "PUT" and request.path == "/latest/api/token":
            ttl = request.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return web.Response(status=400)
            token = f"token-{next(self._ids)}"
            self.tokens.add(token)
            return web.Response(text=token)
        if request.method != "GET":
            return web.Response(status=405)
        if request.headers.get("X-aws-ec2-metadata-token") not in self.tokens:
            return web.Response(status=401)
        if request.path not in self.documents:
            return web.Response(status=404)
        return web.Response(text=json.dumps(self.documents[request.path]), content_type="text/plain")
