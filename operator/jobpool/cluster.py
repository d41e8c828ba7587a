"""The CLI's cluster mode: a pool's queue URL found from its JobPool and Secret through the
current kubeconfig context, and a port-forward to an in-cluster Redis when asked.

The base install has no Kubernetes client, so it is imported only here, on first use; the
decisions (which Secret, which Service) are pure functions of the objects read.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import select
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

from .contract import DEFAULT_NAMESPACE

GROUP, VERSION, PLURAL = "jobpool.dev", "v1alpha1", "jobpools"
KUBE_EXTRA = "pip install 'jobpool[kube]'"
WORKER, PRODUCER = "worker", "producer"  # whose credentials a command needs (jobpool.queue.acl)
REQUEST_TIMEOUT = 10


class ClusterError(Exception):
    """The cluster could not tell the pool's queue; the message says what to do."""


class PoolNotFound(ClusterError):
    """The JobPool does not exist (exit status 1, like kubectl's NotFound)."""


@dataclasses.dataclass(frozen=True)
class QueueSource:
    """Where a pool's queue URL is: inline, or in key `key` of Secret `secret`."""

    url: str | None = None
    secret: str | None = None
    key: str = "url"
    managed: bool = False  # the Secret is the one the operator makes for the pool


def queue_source(pool: dict[str, Any], role: str) -> QueueSource:
    """Pure: spec.queue.url, spec.queue.urlSecretRef, else the Secret the operator makes on a
    queue it administers (`<pool>-queue` for workers, `<pool>-queue-producer` for producers)."""
    queue = (pool.get("spec") or {}).get("queue") or {}
    if queue.get("url"):
        return QueueSource(url=queue["url"])
    ref = queue.get("urlSecretRef")
    if ref:
        return QueueSource(secret=ref["name"], key=ref.get("key") or "url")
    name = pool["metadata"]["name"]
    return QueueSource(secret=f"{name}-queue" if role == WORKER else f"{name}-queue-producer", managed=True)


def service_of(host: str, namespace: str) -> tuple[str, str]:
    """Pure: the Service (name, namespace) a cluster DNS name points at: `svc`, `svc.ns`,
    `svc.ns.svc` or `svc.ns.svc.<cluster domain>`."""
    parts = host.split(".")
    if len(parts) == 1:
        return parts[0], namespace
    if len(parts) == 2 or parts[2] == "svc":
        return parts[0], parts[1]
    raise ClusterError(
        f"cannot port-forward to {host!r}: not a Service name (svc, svc.ns or svc.ns.svc.cluster.local)"
    )


def replace_host(url: str, host: str, port: int) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")
    credentials = netloc[0] + "@" if netloc[1] else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{credentials}{host}:{port}"))


def _client():
    try:
        import kubernetes
    except ModuleNotFoundError:
        raise ClusterError(
            f"cluster mode needs the Kubernetes client: {KUBE_EXTRA}, or give --queue URL"
        ) from None
    return kubernetes


class Cluster:
    """The API server of the current kubeconfig context (or `context`)."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None):
        kubernetes = _client()
        from kubernetes.config.config_exception import ConfigException

        try:
            contexts, current = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = next((c for c in contexts if c["name"] == context), None) if context else current
            if chosen is None:
                raise ClusterError(f"no context {context!r} in the kubeconfig")
            self.api = kubernetes.config.new_client_from_config(
                config_file=kubeconfig, context=chosen["name"]
            )
        except (ConfigException, OSError) as exc:
            raise ClusterError(
                f"no usable kubeconfig ({str(exc).splitlines()[0]}): set KUBECONFIG, or give --queue URL"
            ) from None
        self.namespace = (chosen.get("context") or {}).get("namespace") or DEFAULT_NAMESPACE
        self.kubernetes = kubernetes

    def _call(self, what: str, function: Any, *args: Any) -> Any:
        """The object, or None when the API server says NotFound."""
        ApiException = self.kubernetes.client.exceptions.ApiException
        try:
            return function(*args, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            reason = exc.reason or ""
            raise ClusterError(f"cannot read {what}: {exc.status} {reason}".rstrip()) from None
        except Exception as exc:  # urllib3 connection errors: one line, not a traceback
            raise ClusterError(f"cannot reach the API server to read {what}: {type(exc).__name__}") from None

    def pool(self, namespace: str, name: str) -> dict[str, Any]:
        custom = self.kubernetes.client.CustomObjectsApi(self.api)
        found = self._call(
            f"jobpool {namespace}/{name}",
            custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
        )
        if found is None:
            raise PoolNotFound(f'{PLURAL}.{GROUP} "{name}" not found in namespace "{namespace}"')
        return found

    def queue_url(self, namespace: str, name: str, role: str) -> str:
        source = queue_source(self.pool(namespace, name), role)
        if source.url:
            return source.url
        core = self.kubernetes.client.CoreV1Api(self.api)
        secret = self._call(
            f"Secret {namespace}/{source.secret}", core.read_namespaced_secret, source.secret, namespace
        )
        if secret is None:
            if source.managed:
                raise ClusterError(
                    f"pool {namespace}/{name} has no queue of its own and no Secret "
                    f"{source.secret} (the operator makes it on a queue it administers, "
                    f"--admin-queue): give --queue URL"
                )
            raise ClusterError(
                f"spec.queue.urlSecretRef of pool {namespace}/{name}: Secret {source.secret} not found"
            )
        data = secret.data or {}
        if source.key not in data:
            raise ClusterError(f"Secret {namespace}/{source.secret} has no key {source.key!r}")
        return base64.b64decode(data[source.key]).decode().strip()

    def ready_pod(self, service: str, namespace: str, port: int) -> tuple[str, int]:
        """A ready pod behind the Service and the pod port of the Service's `port`."""
        core = self.kubernetes.client.CoreV1Api(self.api)
        svc = self._call(f"Service {namespace}/{service}", core.read_namespaced_service, service, namespace)
        if svc is None:
            raise ClusterError(f"cannot port-forward: Service {namespace}/{service} not found")
        wanted = next((p for p in svc.spec.ports or () if p.port == port), None)
        if wanted is None:
            raise ClusterError(f"cannot port-forward: Service {namespace}/{service} has no port {port}")
        endpoints = self._call(
            f"Endpoints {namespace}/{service}", core.read_namespaced_endpoints, service, namespace
        )
        for subset in (endpoints.subsets if endpoints else None) or ():
            target = next(
                (p.port for p in subset.ports or () if p.name == wanted.name or len(subset.ports) == 1), None
            )
            for address in subset.addresses or ():
                if target and address.target_ref and address.target_ref.kind == "Pod":
                    return address.target_ref.name, target
        raise ClusterError(f"cannot port-forward: Service {namespace}/{service} has no ready pod")

    @contextlib.contextmanager
    def port_forward(self, url: str, namespace: str) -> Iterator[str]:
        """`url` rewritten to a local port that forwards to a ready pod of its Service."""
        parts = urllib.parse.urlsplit(url)
        service, service_namespace = service_of(parts.hostname or "", namespace)
        pod, pod_port = self.ready_pod(service, service_namespace, parts.port or 6379)
        forwarder = _Forwarder(self, pod, service_namespace, pod_port)
        try:
            yield replace_host(url, "127.0.0.1", forwarder.port)
        finally:
            forwarder.close()


class _Forwarder:
    """A local listener whose every connection is one port-forward stream to the pod."""

    def __init__(self, cluster: Cluster, pod: str, namespace: str, port: int):
        from kubernetes.stream import portforward

        core = cluster.kubernetes.client.CoreV1Api(cluster.api)
        self._open = lambda: portforward(
            core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
        )
        self._pod_port = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="port-forward").start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                local, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pump, args=(local,), daemon=True).start()

    def _pump(self, local: socket.socket) -> None:
        try:
            forward = self._open()
            remote = forward.socket(self._pod_port)
        except Exception:
            local.close()
            return
        sockets = [local, remote]
        try:
            while not self._closed.is_set():
                readable, _, _ = select.select(sockets, [], [], 0.5)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (remote if source is local else local).sendall(data)
        except OSError:
            return
        finally:
            local.close()
            remote.close()
            with contextlib.suppress(Exception):
                forward.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
