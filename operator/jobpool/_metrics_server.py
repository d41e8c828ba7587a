"""The `/metrics` + `/healthz` endpoint of the operator and of every worker process.

aiohttp serves it: both run an asyncio loop already, the operator needs aiohttp anyway for the
TLS external metrics API, and it is a base dependency that pulls in no operator package."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Health = Callable[[], dict[str, Any]]


def build_app(registry: CollectorRegistry, health: Health | None) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        if health is None:
            return web.Response(text="ok\n")
        report = health()  # 503 once the process failed and is about to exit
        return web.Response(
            text=json.dumps(report),
            content_type="application/json",
            status=200 if report["status"] == "ok" else 503,
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def serve_metrics(
    registry: CollectorRegistry, port: int, health: Health | None = None, host: str = "0.0.0.0"
) -> web.AppRunner:
    """Serve `registry` on `/metrics` and `health()` on `/healthz` (plain "ok" without one);
    OSError when the port is taken. Stop it with `await runner.cleanup()`."""
    runner = web.AppRunner(build_app(registry, health), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
