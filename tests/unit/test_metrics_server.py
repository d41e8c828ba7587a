"""The one `/metrics` + `/healthz` endpoint of the operator and the workers, over real HTTP."""

import asyncio
import socket

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Gauge

from jobpool._metrics_server import serve_metrics
from tests.helpers import free_port


async def get(port: int, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, response.headers["Content-Type"], await response.text()


def test_metrics_and_health_follow_the_report():
    registry = CollectorRegistry()
    Gauge("jobpool_worker_slots", "Job slots of this worker", registry=registry).set(4)
    report = {"status": "ok"}

    async def scenario():
        port = free_port()
        runner = await serve_metrics(registry, port, lambda: report, host="127.0.0.1")
        try:
            status, ctype, body = await get(port, "/metrics")
            assert status == 200 and ctype.startswith("text/plain")
            assert "jobpool_worker_slots 4.0" in body
            assert (await get(port, "/healthz"))[::2] == (200, '{"status": "ok"}')
            report.update(status="failed", error="boom")
            status, ctype, body = await get(port, "/healthz")
            assert (status, ctype) == (503, "application/json; charset=utf-8") and "boom" in body
            assert (await get(port, "/nothing"))[0] == 404
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_without_a_health_report_healthz_says_ok():
    async def scenario():
        port = free_port()
        runner = await serve_metrics(CollectorRegistry(), port, host="127.0.0.1")
        try:
            assert (await get(port, "/healthz"))[::2] == (200, "ok\n")
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_a_taken_port_raises_oserror():
    async def scenario():
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(OSError):
                await serve_metrics(CollectorRegistry(), taken.getsockname()[1], host="127.0.0.1")

    asyncio.run(scenario())
