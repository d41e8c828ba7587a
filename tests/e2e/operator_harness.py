"""Running the real operator against the local control plane and Redis.

`OperatorProcess` is `jobpool operator --namespace <ns>` as a subprocess with the cluster's
KUBECONFIG. kwok's pods run nothing, so local workers stand in for worker pods: one
`tests.helpers.WorkerProcess` named after a pod, or `PodStandIns` for every Ready pod of a
pool. Every wait polls state with a deadline (`tests.helpers.wait_until`).
"""

from __future__ import annotations

import json
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import urllib.request
from typing import Any

import yaml

from tests.helpers import EXAMPLE_HANDLERS, ROOT, free_port, stop_process, wait_until

CRD_DIR = ROOT / "charts/jobpool/crds"


def jobpool_command() -> list[str]:
    return [sys.executable, "-m", "jobpool.cli"]


class OperatorProcess:
    def __init__(
        self,
        cluster,
        namespace: str,
        default_queue: str | None,
        log_path: pathlib.Path,
        kubeconfig: str | None = None,
        all_namespaces: bool = False,
        lease_namespace: str | None = None,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ):
        """`namespace` is the watched namespace, or with `all_namespaces` only the Lease's;
        `lease_namespace` keeps the Lease elsewhere (a test that deletes the watched namespace)."""
        self.cluster, self.namespace, self.default_queue = cluster, namespace, default_queue
        self.extra_env = dict(env or {})
        self.extra_args = list(extra_args)
        self.all_namespaces = all_namespaces
        self.lease_namespace = lease_namespace or namespace
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.metrics_port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        scope = ["--all-namespaces"] if self.all_namespaces else ["--namespace", self.namespace]
        args = [
            *jobpool_command(),
            "operator",
            *scope,
            "--metrics-port",
            str(self.metrics_port),
            "--lease-namespace",
            self.lease_namespace,
        ]
        if self.default_queue:
            args += ["--default-queue", self.default_queue]
        args += self.extra_args
        env = {**self.cluster.env, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1", **self.extra_env}
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            args, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def holds_lease(self) -> bool:
        """The leader Lease names this process (its identity is `<hostname>-<pid>`)."""
        lease = self.cluster.kubectl(
            "get", "lease", "jobpool-operator", "-n", self.lease_namespace, "-o", "json", check=False
        )
        holder = json.loads(lease.stdout)["spec"].get("holderIdentity") if lease.returncode == 0 else None
        return self.alive() and holder == f"{socket.gethostname()}-{self.process.pid}"

    def serves_healthz(self) -> bool:
        try:
            return self.healthz() == 200
        except OSError:  # not listening yet
            return False

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


class PodStandIns:
    """scripts/demo_cluster_pods.py: one local `jobpool worker` per Ready worker pod of `pool`,
    named after it, drained when its pod goes (kwok's pods run nothing)."""

    def __init__(self, cluster, namespace: str, pool: str, log_dir: pathlib.Path):
        env = {**cluster.env, "PYTHONPATH": str(EXAMPLE_HANDLERS)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "scripts/demo_cluster_pods.py"),
                "--namespace",
                namespace,
                "--pool",
                pool,
                "--log-dir",
                str(log_dir),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        stop_process(self.process, timeout=30)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def install_crds(cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    # `kubectl wait` fails at once while the new CRD has no status yet (a large schema takes a moment)
    wait_until(
        lambda: (
            cluster.kubectl(
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/jobpools.jobpool.dev",
                check=False,
            ).returncode
            == 0
        ),
        timeout=90,
        interval=0.5,
        what="the JobPool CRD Established",
    )


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


def start_operator(
    cluster,
    namespace: str,
    queue_url: str | None,
    log_path: pathlib.Path,
    all_namespaces: bool = False,
    lease_namespace: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> OperatorProcess:
    operator = OperatorProcess(
        cluster,
        namespace,
        queue_url,
        log_path,
        all_namespaces=all_namespaces,
        lease_namespace=lease_namespace,
        extra_args=extra_args,
    ).start()
    wait_until(
        lambda: operator.holds_lease() or not operator.alive(),
        timeout=60,
        interval=0.1,
        what="the operator to take its lease",
    )
    assert operator.alive(), operator.logs()[-3000:]
    return operator


def items(cluster, namespace: str, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
    args = ["get", "-n", namespace, kind, "-o", "json"] + (["-l", selector] if selector else [])
    return json.loads(cluster.kubectl(*args).stdout)["items"]


def kubeconfig_for_token(cluster, token: str, path: pathlib.Path) -> str:
    config = yaml.safe_load(pathlib.Path(cluster.kubeconfig).read_text())
    ca = config["clusters"][0]["cluster"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "operator",
                "clusters": [{"name": "local", "cluster": ca}],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator"}}],
            }
        )
    )
    return str(path)
