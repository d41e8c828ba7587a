"""The worker's Prometheus metrics and the tiny HTTP endpoint serving `/metrics` and `/healthz`."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Callable

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("jobpool.worker")
disable_created_metrics()   # the *_created series double the output for no use here

OUTCOMES = ("succeeded", "retried", "dead_lettered", "duplicate")
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)
WAIT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 3600)


class WorkerMetrics:
    def __init__(self, namespace: str, pool: str, slots: int):
        self.registry = CollectorRegistry()
        labels = ("namespace", "pool")
        values = (namespace, pool)
        self.slots = Gauge("jobpool_worker_slots", "Job slots of this worker",
                           labels, registry=self.registry).labels(*values)
        self.busy_slots = Gauge("jobpool_worker_busy_slots", "Slots holding a job",
                                labels, registry=self.registry).labels(*values)
        jobs = Counter("jobpool_worker_jobs_total", "Finished attempts by outcome",
                       labels + ("outcome",), registry=self.registry)
        self.jobs = {outcome: jobs.labels(*values, outcome) for outcome in OUTCOMES}
        self.duration = Histogram("jobpool_job_duration_seconds", "Run time of an attempt",
                                  labels, buckets=DURATION_BUCKETS,
                                  registry=self.registry).labels(*values)
        self.wait = Histogram("jobpool_job_wait_seconds", "From enqueue (or due) to start",
                              labels, buckets=WAIT_BUCKETS, registry=self.registry).labels(*values)
        self.slots.set(slots)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def serve_metrics(metrics: WorkerMetrics, port: int,
                        health: Callable[[], dict[str, Any]]) -> asyncio.AbstractServer:
    """Serve `/metrics` and `/healthz` on `port`: 200 while the worker works, 503 once its
    `status` is no longer "ok" (it failed and is about to exit)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = request.decode(errors="replace").split()
            path = parts[1].split("?")[0] if len(parts) > 1 else ""
            if path == "/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, metrics.exposition()
            elif path == "/healthz":
                report = health()
                status = "200 OK" if report["status"] == "ok" else "503 Service Unavailable"
                ctype, body = "application/json", json.dumps(report).encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: "
                         f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    return await asyncio.start_server(answer, host="0.0.0.0", port=port)
