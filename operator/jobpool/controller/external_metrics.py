"""The operator serves `external.metrics.k8s.io/v1beta1` itself, so an HPA can scale a JobPool
(through its /scale subresource) on the pool's backlog with no Prometheus and no adapter.

The API server's aggregation layer proxies to this HTTPS endpoint (an APIService), and only
after it has authenticated and authorized the caller: requests must present the aggregator's
front-proxy client certificate (the CA and allowed names come from the ConfigMap
kube-system/extension-apiserver-authentication), so nobody else can ask here directly.
Values come from the last reconcile of each pool (at most `poll_interval` old).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..contract import BACKLOG_METRIC, OPERATOR_METRICS, OPERATOR_NAME
from ..queue.base import QueueStats
from .kube import KubeApi, KubeError

log = logging.getLogger("jobpool.operator")

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
POOL_LABEL = "pool"  # the metric label an HPA's selector matches: {matchLabels: {pool: NAME}}

# metric name -> what it counts of a pool's queue
METRICS: dict[str, Callable[[QueueStats], float]] = {
    BACKLOG_METRIC: lambda s: s.backlog,  # waiting + in-flight + retries and scheduled jobs due soon
    OPERATOR_METRICS.waiting: lambda s: s.waiting,
    OPERATOR_METRICS.inflight: lambda s: s.in_flight,
    OPERATOR_METRICS.delayed: lambda s: s.delayed,
    OPERATOR_METRICS.scheduled: lambda s: s.scheduled,
}


def parse_selector(selector: str) -> dict[str, str] | None:
    """`pool=a,pool!=b`-style selectors reduced to what pools carry: equality on `pool`.
    None when the selector asks for anything a pool's metric cannot match."""
    wanted: dict[str, str] = {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if not sep or "!" in key or key.strip() != POOL_LABEL:
            return None
        wanted[POOL_LABEL] = value.strip()
    return wanted


def metric_values(
    metric: str, namespace: str, selector: str, pools: dict[tuple[str, str], tuple[QueueStats, float]]
) -> list[dict[str, Any]]:
    """The ExternalMetricValue items of `metric` for the pools of `namespace` that the selector picks."""
    measure = METRICS[metric]
    wanted = parse_selector(selector)
    if wanted is None:
        return []
    items = []
    for (ns, pool), (stats, seen) in sorted(pools.items()):
        if ns != namespace or wanted.get(POOL_LABEL, pool) != pool:
            continue
        items.append(
            {
                "metricName": metric,
                "metricLabels": {POOL_LABEL: pool},
                "timestamp": dt.datetime.fromtimestamp(seen, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "value": str(int(measure(stats))),
            }
        )
    return items


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def _status(code: int, reason: str, message: str) -> web.Response:
    return _json(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
        code,
    )


def build_app(
    pools: dict[tuple[str, str], tuple[QueueStats, float]], allowed_names: list[str]
) -> web.Application:
    @web.middleware
    async def front_proxy_only(request: web.Request, handler):
        if request.path in ("/healthz", "/livez", "/readyz"):
            return await handler(request)
        cert = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(x[0] for x in (cert or {}).get("subject", ()))
        if not cert or (allowed_names and subject.get("commonName") not in allowed_names):
            return _status(403, "Forbidden", "only the API server's aggregation layer may call this endpoint")
        return await handler(request)

    async def resources(_: web.Request) -> web.Response:
        return _json(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": GROUP_VERSION,
                "resources": [
                    {
                        "name": name,
                        "singularName": "",
                        "namespaced": True,
                        "kind": "ExternalMetricValueList",
                        "verbs": ["get"],
                    }
                    for name in METRICS
                ],
            }
        )

    async def group(_: web.Request) -> web.Response:
        version = {"groupVersion": GROUP_VERSION, "version": VERSION}
        return _json(
            {
                "kind": "APIGroup",
                "apiVersion": "v1",
                "name": GROUP,
                "versions": [version],
                "preferredVersion": version,
            }
        )

    async def values(request: web.Request) -> web.Response:
        metric = request.match_info["metric"]
        if metric not in METRICS:
            return _status(
                404, "NotFound", f"no external metric {metric!r}; jobpool serves {', '.join(METRICS)}"
            )
        items = metric_values(
            metric, request.match_info["namespace"], request.query.get("labelSelector", ""), pools
        )
        return _json(
            {"kind": "ExternalMetricValueList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}
        )

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[front_proxy_only])
    base = f"/apis/{GROUP_VERSION}"
    app.router.add_get(f"/apis/{GROUP}", group)
    app.router.add_get(base, resources)
    app.router.add_get(base + "/namespaces/{namespace}/{metric}", values)
    for path in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(path, ok)
    return app


async def aggregator_trust(kube: KubeApi) -> tuple[str, list[str]]:
    """The front-proxy client CA (PEM) and allowed common names, as the API server publishes them."""
    config = await kube.request(
        "GET", "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
    )
    data = (config or {}).get("data") or {}
    ca = data.get("requestheader-client-ca-file")
    if not ca:
        raise RuntimeError(
            "the API server publishes no requestheader-client-ca-file in "
            "kube-system/extension-apiserver-authentication: it has no aggregation layer "
            "(--requestheader-client-ca-file), so external metrics cannot be served"
        )
    return ca, json.loads(data.get("requestheader-allowed-names") or "[]")


async def serve(
    pools: dict[tuple[str, str], tuple[QueueStats, float]],
    kube: KubeApi,
    *,
    host: str,
    port: int,
    cert_file: str,
    key_file: str,
) -> web.AppRunner:
    runner, _ = await serve_tls(pools, kube, host=host, port=port, cert_file=cert_file, key_file=key_file)
    return runner


async def serve_tls(
    pools: dict[tuple[str, str], tuple[QueueStats, float]],
    kube: KubeApi,
    *,
    host: str,
    port: int,
    cert_file: str,
    key_file: str,
) -> tuple[web.AppRunner, ssl.SSLContext]:
    """`serve`, and the TLS context, which `keep_certificate` reloads in place."""
    ca, allowed = await aggregator_trust(kube)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(cadata=ca)
    context.verify_mode = ssl.CERT_OPTIONAL  # health checks come without a client certificate
    runner = web.AppRunner(build_app(pools, allowed), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    log.info("serving %s on %s:%d for the API server's aggregation layer", GROUP_VERSION, host, port)
    return runner, context


# -- routing to the leader and the certificate's lifecycle -------------------------------------
APISERVICE = f"{VERSION}.{GROUP}"
APISERVICE_PATH = f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE}"
CERT_CHECK_SECONDS = 10.0


def endpoint_slice(service: str, namespace: str, pod_name: str, pod_ip: str, port: int) -> dict[str, Any]:
    """Pure: the one EndpointSlice of the external metrics Service (it has no selector): the
    leader's pod, so the aggregation layer never reaches a standby, which does not listen."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": service,
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": OPERATOR_NAME,
            },
        },
        "addressType": "IPv6" if ":" in pod_ip else "IPv4",
        "endpoints": [
            {
                "addresses": [pod_ip],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod_name},
            }
        ],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }


async def route_to_me(
    kube: KubeApi, service: str, namespace: str, pod_name: str, pod_ip: str, port: int
) -> None:
    slice_ = endpoint_slice(service, namespace, pod_name, pod_ip, port)
    await kube.request(
        "PATCH",
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices/{service}",
        body=slice_,
        content_type="application/apply-patch+yaml",
        params={"fieldManager": OPERATOR_NAME, "force": "true"},
    )
    log.info("external metrics: Service %s/%s now routes to this pod (%s)", namespace, service, pod_ip)


async def publish_ca(kube: KubeApi, ca_pem: bytes) -> bool:
    """Put the CA that signed our certificate into the APIService; True when it changed."""
    wanted = base64.b64encode(ca_pem).decode()
    current = await kube.request("GET", APISERVICE_PATH)
    if current is None or (current.get("spec") or {}).get("caBundle") == wanted:
        return False
    await kube.request(
        "PATCH",
        APISERVICE_PATH,
        body={"spec": {"caBundle": wanted}},
        content_type="application/merge-patch+json",
    )
    log.info("external metrics: the APIService %s trusts the current CA", APISERVICE)
    return True


def _read(*paths: str) -> bytes:
    return b"".join(open(path, "rb").read() for path in paths)


async def keep_certificate(
    context: ssl.SSLContext,
    kube: KubeApi,
    cert_file: str,
    key_file: str,
    ca_file: str | None,
    every: float = CERT_CHECK_SECONDS,
) -> None:
    """Serve the mounted certificate as it is now: the kubelet updates a Secret's files in place,
    and new TLS handshakes use the reloaded chain (no restart, no roll)."""
    seen = _read(cert_file, key_file)
    while True:
        await asyncio.sleep(every)
        try:
            now = _read(cert_file, key_file)
            if now != seen:
                context.load_cert_chain(cert_file, key_file)
                seen = now
                log.info("external metrics: loaded the renewed serving certificate")
            if ca_file:
                await publish_ca(kube, _read(ca_file))
        except (OSError, ssl.SSLError, KubeError) as exc:  # a half-updated volume: next round
            log.warning("external metrics: checking the certificate failed: %s", exc)
