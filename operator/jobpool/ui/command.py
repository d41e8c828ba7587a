"""`jobpool ui`: the web page of a namespace's pools, as one subcommand registration."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from ..contract import DEFAULT_NAMESPACE, ENV_NAMESPACE, ENV_POOL, ENV_QUEUE_URL
from ..names import name_problem
from ..queue import QueueError
from ..queue.urls import check_queue_url, redact_url
from .discovery import discover_pools

DEFAULT_LISTEN = "127.0.0.1:8081"


def register(commands: argparse._SubParsersAction) -> None:
    ui = commands.add_parser(
        "ui",
        help="serve the web page of the pools: jobs, dead letters, actions",
        description="Serve a web page of the pools of one namespace: figures that "
        "refresh live, jobs by state, a dead job's error, and the actions the "
        "queue credential allows (replay, purge).",
    )
    ui.add_argument(
        "--queue", help=f"queue URL (env {ENV_QUEUE_URL}); its credential decides the actions shown"
    )
    ui.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help=f"namespace of the pools (repeatable; env {ENV_NAMESPACE}, default {DEFAULT_NAMESPACE!r})",
    )
    ui.add_argument("--all-namespaces", action="store_true", help="show the pools of every namespace")
    ui.add_argument(
        "--pool",
        action="append",
        default=[],
        help="a pool to show (repeatable; env "
        f"{ENV_POOL}, comma-separated); default: every pool of the namespace, found "
        "again every 30 s, which needs a credential that may SCAN",
    )
    ui.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"host:port to serve on (default {DEFAULT_LISTEN})"
    )
    ui.add_argument(
        "--refresh",
        type=float,
        default=2.0,
        help="seconds between two reads of the pools' figures, shared by every open page (default 2)",
    )
    ui.add_argument(
        "--read-only", action="store_true", help="show and accept no action, whatever the credential may do"
    )


def parse_listen(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {text!r} must be HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]") or "127.0.0.1", int(port)


def run(args: argparse.Namespace) -> int:
    from .app import UiSettings, build_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    url = args.queue or os.environ.get(ENV_QUEUE_URL)
    given = list(args.namespace) or [os.environ.get(ENV_NAMESPACE) or DEFAULT_NAMESPACE]
    namespace = given[0]
    namespaces = None if args.all_namespaces else tuple(given)
    pools = list(args.pool) or [p for p in os.environ.get(ENV_POOL, "").split(",") if p]
    try:
        if not url:
            raise ValueError(f"no queue URL: give --queue URL or set {ENV_QUEUE_URL}")
        check_queue_url(url)
        host, port = parse_listen(args.listen)
        if args.refresh < 0.2:
            raise ValueError(f"--refresh {args.refresh} is below 0.2 seconds")
        if pools and len(given) > 1:
            raise ValueError("--pool names a pool of one --namespace; give one namespace with it")
        for value, what in [*((n, "namespace") for n in given), *((p, "pool") for p in pools)]:
            problem = name_problem(value, what)
            if problem is not None:
                raise ValueError(problem)
        if args.all_namespaces and pools:
            raise ValueError("--pool names a pool of --namespace; give it without --all-namespaces")
        if not pools:
            try:  # once now, so a credential that may not list pools is told at once
                asyncio.run(discover_pools(url, namespaces))
            except Exception as exc:  # NOPERM for a pool's own user, or unreachable
                where = "every namespace" if namespaces is None else f"namespace {', '.join(given)}"
                raise QueueError(
                    f"cannot list the pools of {where} at {redact_url(url)} "
                    f"({type(exc).__name__}); give --pool P for each pool to show"
                ) from None
    except ValueError as exc:
        print(f"jobpool ui: error: {exc}", file=sys.stderr)
        return 2
    except QueueError as exc:
        print(f"jobpool ui: error: {exc}", file=sys.stderr)
        return 1
    settings = UiSettings(
        url=url,
        namespaces=namespaces,
        pools=tuple((namespace, p) for p in pools),
        refresh=args.refresh,
        actions=not args.read_only,
    )
    asyncio.run(_serve(build_app(settings), host, port, settings))
    return 0


async def _serve(app, host: str, port: int, settings) -> None:
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server: Any = site._server  # an asyncio.Server (typed as AbstractServer, which has no sockets)
    bound = server.sockets[0].getsockname()[1] if server and server.sockets else port
    shown = ", ".join(f"{ns}/{pool}" for ns, pool in settings.pools) or "found in the queue"
    logging.getLogger("jobpool.ui").info(
        "serving the %s (%s) from %s on http://%s:%d/",
        settings.title,
        shown,
        redact_url(settings.url),
        host,
        bound,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
