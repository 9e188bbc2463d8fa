"""One HTTP port for probes and scrapes: /healthz, /readyz, /metrics (127.0.0.1 by default).

Each probe callback returns (ok, detail): 200 or 503, with the detail as the body's text, e.g.
"ready: leader" or "not ready: waiting for the first reconcile".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry


@asynccontextmanager
async def health_server(
    bind: str,
    port: int,
    *,
    alive: Callable[[], tuple[bool, str]],
    ready: Callable[[], tuple[bool, str]],
    registry: CollectorRegistry,
) -> AsyncIterator[int]:
    """Serve the endpoints while the context is open; yields the bound port (useful with port 0)."""

    def probe(check: Callable[[], tuple[bool, str]], yes: str, no: str) -> web.Response:
        ok, detail = check()
        text = f"{yes if ok else no}: {detail}\n" if detail else f"{yes if ok else no}\n"
        return web.Response(status=200 if ok else 503, text=text)

    async def healthz(_: web.Request) -> web.Response:
        return probe(alive, "ok", "unhealthy")

    async def readyz(_: web.Request) -> web.Response:
        return probe(ready, "ready", "not ready")

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)])
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, bind, port)
    await site.start()
    try:
        yield int(runner.addresses[0][1]) if runner.addresses else port
    finally:
        await runner.cleanup()
