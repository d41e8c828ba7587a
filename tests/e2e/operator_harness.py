"""Running the real operator and real workers against the local control plane and Redis.

`OperatorProcess` is `jobpool operator --namespace <ns>` as a subprocess with the cluster's
KUBECONFIG; `WorkerProcess` is a local `jobpool worker` draining a pool's queue (kwok pods
run nothing, so local processes stand in for the worker pods, with the pods' names as
their worker ids where a test needs that). Every wait polls with a deadline.
"""
from __future__ import annotations

import json
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any, Callable

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "charts/jobpool/crds"
EXAMPLE_HANDLERS = ROOT / "examples/01-minimal"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def eventually(check: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1,
               message: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except subprocess.CalledProcessError as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}; last: {last}")


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Signal a process and wait for it; SIGKILL it when it has not exited within `timeout`."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def jobpool_command() -> list[str]:
    return [sys.executable, "-m", "jobpool.cli"]


class OperatorProcess:
    def __init__(self, cluster, namespace: str, default_queue: str | None, log_path: pathlib.Path,
                 kubeconfig: str | None = None, all_namespaces: bool = False, lease_namespace: str | None = None,
                 extra_args: tuple[str, ...] = ()):
        """`namespace` is the watched namespace, or with `all_namespaces` only the Lease's;
        `lease_namespace` keeps the Lease elsewhere (a test that deletes the watched namespace)."""
        self.cluster, self.namespace, self.default_queue = cluster, namespace, default_queue
        self.extra_args = list(extra_args)
        self.all_namespaces = all_namespaces
        self.lease_namespace = lease_namespace or namespace
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.metrics_port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "OperatorProcess":
        scope = ["--all-namespaces"] if self.all_namespaces else ["--namespace", self.namespace]
        args = [*jobpool_command(), "operator", *scope,
                "--metrics-port", str(self.metrics_port), "--lease-namespace", self.lease_namespace]
        if self.default_queue:
            args += ["--default-queue", self.default_queue]
        args += self.extra_args
        env = {**self.cluster.env, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1"}
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def healthz(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=5) as r:
            return r.status

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.process is not None:
            stop_process(self.process, sig, timeout)
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class WorkerProcess:
    def __init__(self, queue_url: str, namespace: str, pool: str, handler: str, *, concurrency: int = 1,
                 worker_id: str | None = None, extra: list[str] | None = None):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE_HANDLERS), str(ROOT)]),
               "PYTHONUNBUFFERED": "1"}
        args = [*jobpool_command(), "worker", "--queue", queue_url, "--namespace", namespace, "--pool", pool,
                "--handler", handler, "--concurrency", str(concurrency), "--metrics-port", "0",
                "--drain-seconds", "5", *(extra or [])]
        if worker_id:
            args += ["--worker-id", worker_id]
        self.process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)

    def stop(self) -> None:
        stop_process(self.process, timeout=15)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def install_crds(cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/jobpools.jobpool.dev")


def apply(cluster, namespace: str, manifest: dict[str, Any] | str, check: bool = True):
    text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=text, check=check)


def get(cluster, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", "-n", namespace, kind, name, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)


def pool_manifest(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("worker", {"image": "registry.example/jobpool-examples:0.1", "handler": "tasks:square"})
    return {"apiVersion": "jobpool.dev/v1alpha1", "kind": "JobPool", "metadata": {"name": name}, "spec": spec}


def condition(pool: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((pool or {}).get("status") or {}).get("conditions", []):
        if cond["type"] == type_:
            return cond
    return {}


@pytest.fixture(scope="session")
def jobpool_crds(kube_cluster):
    install_crds(kube_cluster)
    return kube_cluster


def start_operator(cluster, namespace: str, queue_url: str | None, log_path: pathlib.Path,
                   all_namespaces: bool = False, lease_namespace: str | None = None,
                   extra_args: tuple[str, ...] = ()) -> OperatorProcess:
    operator = OperatorProcess(cluster, namespace, queue_url, log_path, all_namespaces=all_namespaces,
                               lease_namespace=lease_namespace, extra_args=extra_args).start()
    eventually(lambda: "holding the leader lease" in operator.logs() or not operator.alive(), timeout=60,
               message="the operator to take its lease")
    assert operator.alive(), operator.logs()[-3000:]
    return operator


@pytest.fixture
def operator(jobpool_crds, kube_namespace, redis_server, tmp_path):
    """A running operator for the test's namespace; its pools are deleted (finalizer run) after."""
    op = start_operator(jobpool_crds, kube_namespace, redis_server.url, tmp_path / "operator.log")
    try:
        yield op
    finally:
        if not op.alive():
            op = start_operator(jobpool_crds, kube_namespace, redis_server.url, tmp_path / "operator.log")
        jobpool_crds.kubectl("delete", "jobpools", "--all", "-n", kube_namespace, "--timeout=60s", check=False)
        op.stop()
        print("---- operator log (tail) ----\n" + op.logs()[-6000:])


def items(cluster, namespace: str, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
    args = ["get", "-n", namespace, kind, "-o", "json"] + (["-l", selector] if selector else [])
    return json.loads(cluster.kubectl(*args).stdout)["items"]


def kubeconfig_for_token(cluster, token: str, path: pathlib.Path) -> str:
    config = yaml.safe_load(pathlib.Path(cluster.kubeconfig).read_text())
    ca = config["clusters"][0]["cluster"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "local", "cluster": ca}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator"}}]}))
    return str(path)
