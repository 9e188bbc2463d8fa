"""One HTTP port for probes and scrapes: /healthz, /readyz, /metrics (127.0.0.1 by default)."""

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
    alive: Callable[[], bool],
    ready: Callable[[], bool],
    registry: CollectorRegistry,
) -> AsyncIterator[int]:
    """Serve the endpoints while the context is open; yields the bound port (useful with port 0)."""

    async def healthz(_: web.Request) -> web.Response:
        ok = alive()
        return web.Response(status=200 if ok else 503, text="ok\n" if ok else "loops stalled\n")

    async def readyz(_: web.Request) -> web.Response:
        ok = ready()
        return web.Response(status=200 if ok else 503, text="ready\n" if ok else "not ready\n")

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
        server = site._server  # aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        yield int(sockets[0].getsockname()[1]) if sockets else port
    finally:
        await runner.cleanup()
