"""`jobpool operator probe`: what `helm test` runs. It applies a one-pod JobPool whose workers run
the operator's own image (handler `json:dumps`, no code of the user's), submits one job through
the pool's producer Secret, waits for its result and deletes the pool: the operator, the queue,
the pool's credentials and a worker pod all worked together."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from typing import Any

from ..queue import QueueError, open_queue
from . import kinds
from .kube import KubeApi, KubeError

PAYLOAD = {"probe": True}


def probe_pool(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": kinds.JOBPOOL.api_version,
        "kind": kinds.JOBPOOL.kind,
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "jobpool"}},
        "spec": {
            "parallelism": 1,
            "drainSeconds": 5,
            "worker": {
                "image": image,
                "handler": "json:dumps",
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
            },
        },
    }


def ready(pool: dict[str, Any] | None) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in ((pool or {}).get("status") or {}).get("conditions") or []
    )


async def wait_for(what: str, check, deadline: float) -> Any:
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(1.0)


async def probe(
    kube: KubeApi, namespace: str, name: str, image: str, timeout: float, queue_url: str | None = None
) -> str:
    deadline = time.monotonic() + timeout
    pool = probe_pool(name, image)
    pool["metadata"]["namespace"] = namespace
    await kube.create(pool)
    try:
        await wait_for(f"JobPool {namespace}/{name} Ready", lambda: _ready(kube, namespace, name), deadline)
        url = queue_url
        if url is None:  # the operator administers the queue: the pool's own producer user
            secret = await wait_for(
                f"Secret {namespace}/{name}-queue-producer",
                lambda: kube.get(kinds.SECRET, namespace, f"{name}-queue-producer"),
                deadline,
            )
            url = base64.b64decode(secret["data"]["url"]).decode()
        queue = open_queue(url, namespace, name)
        try:
            job = await queue.submit(PAYLOAD)
            result = await queue.result(job, timeout=max(1.0, deadline - time.monotonic()))
        finally:
            await queue.close()
        if result is None or result.result != json.dumps(PAYLOAD):
            raise TimeoutError(f"the result of job {job}")
        return f"job {job} ran on pool {namespace}/{name} in {timeout - (deadline - time.monotonic()):.1f}s"
    finally:
        await kube.delete(kinds.JOBPOOL, namespace, name)


async def _ready(kube: KubeApi, namespace: str, name: str) -> bool:
    return ready(await kube.get(kinds.JOBPOOL, namespace, name))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jobpool operator probe", description="Run one job on a probe pool (helm test)."
    )
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--image", required=True, help="the worker image (the operator's)")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--queue-url", help="the default queue, when the operator does not administer it")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    kube = KubeApi.from_environment()
    try:
        found = await probe(kube, args.namespace, args.name, args.image, args.timeout, args.queue_url)
        print(f"jobpool operator probe: {found}")
        return 0
    except TimeoutError as exc:
        print(
            f"jobpool operator probe: error: no {exc} within {args.timeout:.0f}s: `kubectl describe "
            f"jobpool {args.name} -n {args.namespace}` and the operator's log say why",
            file=sys.stderr,
        )
    except (KubeError, QueueError) as exc:
        print(f"jobpool operator probe: error: {exc}", file=sys.stderr)
    finally:
        await kube.close()
    return 1


def main(argv: list[str]) -> int:
    return asyncio.run(run(parse_args(argv)))
