"""`jobpool operator`: parse the flags, take the leader lease, run kopf."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

import kopf

from .. import contract
from .._metrics_server import serve_metrics
from . import crd_check, external_metrics
from .credentials import QueueAdmin
from .handlers import build_registry, post_event
from .health import health_report
from .kube import KubeApi, KubeError
from .lease import LeaderLease
from .metrics import OperatorMetrics
from .reconcile import OperatorConfig, OperatorContext
from .ui_viewer import keep_viewer

log = logging.getLogger("jobpool.operator")
REDIS_SAMPLE_SECONDS = 10.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jobpool operator", description="Run the JobPool operator (kopf inside)."
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable)",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    default = parser.add_mutually_exclusive_group()
    default.add_argument(
        "--default-queue",
        metavar="URL",
        default=os.environ.get("JOBPOOL_DEFAULT_QUEUE_URL"),
        help="queue of pools without spec.queue (env JOBPOOL_DEFAULT_QUEUE_URL)",
    )
    default.add_argument(
        "--admin-queue",
        metavar="URL",
        default=os.environ.get("JOBPOOL_ADMIN_QUEUE_URL"),
        help="the same, with a URL allowed to manage ACL users (Redis >= 7): each pool "
        "without spec.queue gets users of its own there (env JOBPOOL_ADMIN_QUEUE_URL)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        default=int(os.environ.get("JOBPOOL_OPERATOR_METRICS_PORT", contract.OPERATOR_METRICS_PORT)),
        help=f"port of /metrics and /healthz (default {contract.OPERATOR_METRICS_PORT}; 0 = off)",
    )
    parser.add_argument(
        "--external-metrics-port",
        type=int,
        metavar="P",
        default=int(os.environ.get("JOBPOOL_EXTERNAL_METRICS_PORT", "0")),
        help="serve external.metrics.k8s.io over HTTPS on this port for an HPA (default 0 = off)",
    )
    parser.add_argument(
        "--external-metrics-address",
        metavar="IP",
        default="0.0.0.0",
        help="address of the external metrics API (default 0.0.0.0)",
    )
    parser.add_argument(
        "--tls-cert-file",
        metavar="FILE",
        default=os.environ.get("JOBPOOL_TLS_CERT_FILE"),
        help="serving certificate of the external metrics API",
    )
    parser.add_argument(
        "--tls-private-key-file",
        metavar="FILE",
        default=os.environ.get("JOBPOOL_TLS_KEY_FILE"),
        help="its private key",
    )
    parser.add_argument(
        "--tls-ca-file",
        metavar="FILE",
        default=os.environ.get("JOBPOOL_TLS_CA_FILE"),
        help="the CA of the serving certificate: the leader puts it into the APIService's caBundle",
    )
    parser.add_argument(
        "--external-metrics-service",
        metavar="NAME",
        default=os.environ.get("JOBPOOL_EXTERNAL_METRICS_SERVICE"),
        help="a Service without selector that the leader routes to itself (its EndpointSlice); "
        "needs JOBPOOL_POD_IP and JOBPOOL_POD_NAME",
    )
    parser.add_argument(
        "--lease-namespace",
        metavar="NS",
        default=os.environ.get("JOBPOOL_OPERATOR_NAMESPACE"),
        help=f"namespace of the leader Lease (default: the first --namespace, or {contract.DEFAULT_NAMESPACE})",
    )
    parser.add_argument("--lease-name", default=contract.OPERATOR_NAME, help="name of the leader Lease")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=contract.DEFAULT_POLL_INTERVAL_SECONDS,
        metavar="S",
        help=f"seconds between two reconciles of one pool (default {contract.DEFAULT_POLL_INTERVAL_SECONDS:g})",
    )
    parser.add_argument(
        "--kueue",
        action="store_true",
        default=os.environ.get("JOBPOOL_KUEUE", "") == "1",
        help="read Kueue's Workloads (kueue.x-k8s.io), so a pool whose pods wait for quota says "
        "why in its status (env JOBPOOL_KUEUE=1; needs list/watch on workloads)",
    )
    parser.add_argument("--log-level", default=os.environ.get("JOBPOOL_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    if not args.namespace and not args.all_namespaces:
        parser.error("give --namespace NS (repeatable) or --all-namespaces")
    if args.default_queue and args.admin_queue:
        parser.error(
            "give --default-queue or --admin-queue, not both (JOBPOOL_DEFAULT_QUEUE_URL or "
            "JOBPOOL_ADMIN_QUEUE_URL)"
        )
    if args.poll_interval <= 0:
        parser.error("--poll-interval must be > 0")
    if args.external_metrics_port and not (args.tls_cert_file and args.tls_private_key_file):
        parser.error("--external-metrics-port needs --tls-cert-file and --tls-private-key-file")
    return args


async def run_operator(args: argparse.Namespace) -> int:
    from ..queue import open_queue

    kube = KubeApi.from_environment()
    stale = await crd_check.check(kube)
    if stale:
        await kube.close()
        print(f"jobpool operator: error: {stale}", file=sys.stderr)
        return 1
    metrics = OperatorMetrics()
    identity = f"{socket.gethostname()}-{os.getpid()}"
    # The lease has connections of its own: a renewal must never queue behind a thousand pools' writes.
    lease_kube = KubeApi(kube.configuration)
    lease = LeaderLease(
        lease_kube,
        args.lease_namespace or (args.namespace[0] if args.namespace else contract.DEFAULT_NAMESPACE),
        args.lease_name,
        identity,
    )
    watching = asyncio.Event()  # kopf set it once its watches started
    watch_loop: list[asyncio.Task[Any]] = []

    def health() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        renewed_at = lease.renewed_at
        leading = renewed_at is not None
        return health_report(
            leading=leading,
            renewed_ago=loop.time() - renewed_at if renewed_at is not None else None,
            watching=watching.is_set(),
            watch_ended=bool(watch_loop) and watch_loop[0].done(),
            stale_after=lease.renew_every * 2.5,
        )

    runner = await serve_metrics(metrics.registry, args.metrics_port, health) if args.metrics_port else None
    stop_flag = asyncio.Event()
    keeper: asyncio.Task[Any] | None = None
    external = None
    admin: QueueAdmin | None = None
    viewer_keeper: asyncio.Task[Any] | None = None
    sampler: asyncio.Task[Any] | None = None
    certificate: asyncio.Task[Any] | None = None
    try:
        await lease.acquire()
        keeper = asyncio.create_task(lease.keep(stop_flag))
        if args.external_metrics_port:  # the leader's numbers: a standby serves nothing
            external, context = await external_metrics.serve_tls(
                metrics.latest,
                kube,
                host=args.external_metrics_address,
                port=args.external_metrics_port,
                cert_file=args.tls_cert_file,
                key_file=args.tls_private_key_file,
            )
            try:  # a refused route must not stop the operator: the Service then waits for a leader
                await route_external_metrics(args, kube, lease.namespace)
            except KubeError as exc:
                log.error("external metrics: cannot route the Service or publish the CA: %s", exc)
            certificate = asyncio.create_task(
                external_metrics.keep_certificate(
                    context, kube, args.tls_cert_file, args.tls_private_key_file, args.tls_ca_file
                )
            )
        admin = QueueAdmin(args.admin_queue) if args.admin_queue else None
        viewer_password = os.environ.get("JOBPOOL_UI_VIEWER_PASSWORD")
        if viewer_password and admin is not None:  # the chart's web page reads through its own user
            viewer_keeper = asyncio.create_task(
                keep_viewer(
                    admin,
                    args.namespace or None,
                    viewer_password,
                    os.environ.get("JOBPOOL_UI_ACTIONS") == "1",
                )
            )
        if admin is not None:
            sampler = asyncio.create_task(sample_redis(admin, metrics))
        ctx = OperatorContext(
            kube,
            OperatorConfig(
                default_queue=args.admin_queue or args.default_queue,
                poll_interval=args.poll_interval,
                kueue=args.kueue,
            ),
            metrics,
            open_queue,
            post_event,
            admin,
        )
        watch_loop.append(
            asyncio.create_task(
                kopf.operator(
                    registry=build_registry(ctx),
                    clusterwide=args.all_namespaces,
                    namespaces=args.namespace,
                    standalone=True,
                    stop_flag=stop_flag,
                    ready_flag=watching,
                )
            )
        )
        signals = asyncio.create_task(stop_on_signals(watching, stop_flag))
        await watch_loop[0]
        signals.cancel()
    finally:
        if keeper is not None:
            keeper.cancel()
        if viewer_keeper is not None:
            viewer_keeper.cancel()
        if sampler is not None:
            sampler.cancel()
        if certificate is not None:
            certificate.cancel()
        await lease.release()
        await lease_kube.close()
        await kube.close()
        if runner is not None:
            await runner.cleanup()
        if external is not None:
            await external.cleanup()
        if admin is not None:
            await admin.close()
    return 0


async def stop_on_signals(watching: asyncio.Event, stop_flag: asyncio.Event) -> None:
    """SIGTERM/SIGINT set the stop flag instead of kopf's own signal future: stopped by its signal,
    kopf leaves its waiter on our flag pending and waits 5 s for it as a hung task on every exit."""
    await watching.wait()  # kopf installed its handlers before its watches started
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_flag.set)


async def route_external_metrics(args: argparse.Namespace, kube: KubeApi, namespace: str) -> None:
    """As the new leader: the APIService trusts our CA and its Service routes to this pod."""
    if args.tls_ca_file:
        with open(args.tls_ca_file, "rb") as ca:
            await external_metrics.publish_ca(kube, ca.read())
    pod_ip, pod_name = os.environ.get("JOBPOOL_POD_IP"), os.environ.get("JOBPOOL_POD_NAME")
    if args.external_metrics_service and pod_ip and pod_name:
        await external_metrics.route_to_me(
            kube, args.external_metrics_service, namespace, pod_name, pod_ip, args.external_metrics_port
        )


async def sample_redis(
    admin: QueueAdmin, metrics: OperatorMetrics, every: float = REDIS_SAMPLE_SECONDS
) -> None:
    """The administered queue's memory for the alerts (jobpool_redis_*), every `every` seconds."""
    while True:
        metrics.observe_redis(*await admin.memory())
        await asyncio.sleep(every)


def main(argv: list[str]) -> int:
    if argv[:1] == ["guard-pools"]:  # the chart's pre-delete hook
        from .release_guard import main as guard_main

        return guard_main(argv[1:])
    if argv[:1] == ["probe"]:  # the chart's `helm test`
        from .probe import main as probe_main

        return probe_main(argv[1:])
    if argv[:1] == ["ensure-serving-cert"]:  # the chart's hook when externalMetrics.enabled
        from .serving_cert import main as cert_main

        return cert_main(argv[1:])
    if argv[:1] == ["ensure-redis-secret"]:  # the chart's pre-install/pre-upgrade hook
        from .release_secrets import main as secret_main

        return secret_main(argv[1:])
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        return asyncio.run(run_operator(args))
    except KeyboardInterrupt:
        return 0
