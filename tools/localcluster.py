#!/usr/bin/env python3
"""A real Kubernetes control plane as local processes on 127.0.0.1, without Docker.

etcd, kube-apiserver (TLS, client certificates, service-account keys, RBAC),
kube-controller-manager, kube-scheduler and kwok (the kubelets of a few fake nodes), all
built by `make tools` into .tools/bin. Ports are chosen free at start, so clusters can run
side by side. Standard library plus the `openssl` command only.

    python tools/localcluster.py up --dir .cluster      # prints the kubeconfig path
    python tools/localcluster.py status --dir .cluster
    python tools/localcluster.py down --dir .cluster
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BIN_DIR = REPO_ROOT / ".tools" / "bin"
KWOK_STAGES = REPO_ROOT / "tools" / "kwok" / "stages.yaml"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl")
# Start order.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
STATE_FILE = "cluster.json"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"
NODE_ANNOTATION = "kwok.x-k8s.io/node"
PR_SET_PDEATHSIG = 1
PORT_ATTEMPTS = 3


class ClusterError(RuntimeError):
    """The control plane could not be built, started or reached."""


@dataclass
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    @classmethod
    def free(cls) -> "Ports":
        # Hold every socket until all are chosen so the five ports are distinct.
        with contextlib.ExitStack() as stack:
            ports = []
            for _ in range(5):
                sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                sock.bind(("127.0.0.1", 0))
                ports.append(sock.getsockname()[1])
        return cls(*ports)


def missing_binaries(bin_dir: Path) -> list[str]:
    return [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {result.stderr.strip().splitlines()[-1:]}")


def make_pki(pki: Path) -> None:
    """A CA, the apiserver's serving cert, client certs and the service-account key pair (ECDSA P-256)."""
    if shutil.which("openssl") is None:
        raise ClusterError("the `openssl` command is required (Debian: apt-get install openssl)")
    pki.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
             "-subj", "/CN=jobpool-local-ca", cwd=pki)
    leaves = {
        "apiserver": ("/CN=kube-apiserver",
                      "subjectAltName=IP:127.0.0.1,IP:" + SERVICE_IP + ",DNS:localhost,DNS:kubernetes,"
                      "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
                      "DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth"),
        "admin": ("/O=system:masters/CN=jobpool-admin", "extendedKeyUsage=clientAuth"),
        "controller-manager": ("/CN=system:kube-controller-manager", "extendedKeyUsage=clientAuth"),
        "scheduler": ("/CN=system:kube-scheduler", "extendedKeyUsage=clientAuth"),
        # kwok writes node and pod status for every fake node, like a kubelet with wide rights.
        "kwok": ("/O=system:masters/CN=kwok", "extendedKeyUsage=clientAuth"),
    }
    for name, (subject, extensions) in leaves.items():
        (pki / f"{name}.ext").write_text(extensions + "\n")
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=pki)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "3650", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=pki)
    # The aggregation layer's own CA and client certificate (front proxy), as kubeadm makes them.
    _openssl("req", "-x509", *ec, "-keyout", "front-proxy-ca.key", "-out", "front-proxy-ca.crt", "-days", "3650",
             "-subj", "/CN=jobpool-local-front-proxy-ca", cwd=pki)
    (pki / "front-proxy-client.ext").write_text("extendedKeyUsage=clientAuth\n")
    _openssl("req", *ec, "-keyout", "front-proxy-client.key", "-out", "front-proxy-client.csr",
             "-subj", "/CN=front-proxy-client", cwd=pki)
    _openssl("x509", "-req", "-in", "front-proxy-client.csr", "-CA", "front-proxy-ca.crt", "-CAkey",
             "front-proxy-ca.key", "-CAcreateserial", "-days", "3650", "-extfile", "front-proxy-client.ext",
             "-out", "front-proxy-client.crt", cwd=pki)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=pki)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for path in pki.iterdir():
        path.chmod(0o600)


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "jobpool-local", "cluster": {
            "server": server, "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(f"{user}.crt"), "client-key-data": b64(f"{user}.key")}}],
        "contexts": [{"name": "jobpool-local", "context": {"cluster": "jobpool-local", "user": user}}],
        "current-context": "jobpool-local",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


def component_commands(root: Path, bin_dir: Path, ports: Ports) -> dict[str, list[str]]:
    pki = root / "pki"
    etcd_url = f"http://127.0.0.1:{ports.etcd_client}"
    peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
    return {
        "etcd": [
            str(bin_dir / "etcd"), "--name=jobpool", f"--data-dir={root / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=jobpool={peer_url}", "--initial-cluster-state=new",
            # A throw-away cluster: durability on power loss is not worth the fsync latency.
            "--unsafe-no-fsync", "--log-level=warn", "--quota-backend-bytes=2147483648",
        ],
        "kube-apiserver": [
            str(bin_dir / "kube-apiserver"),
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={ports.apiserver}",
            f"--etcd-servers={etcd_url}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            # as many production clusters: setting blockOwnerDeletion needs update on the owner's finalizers
            "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement",
            # the aggregation layer, for APIServices such as the operator's external metrics
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            # No pod can reach the API through the kubernetes Service here, and loopback may not be advertised.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true", "--profiling=false", "--v=1",
        ],
        "kube-controller-manager": [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={root / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1", f"--secure-port={ports.controller_manager}",
            "--leader-elect=false", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*", "--profiling=false", "--v=1",
            # HPAs are evaluated every 2 s (default 15 s), so tests see them act quickly
            "--horizontal-pod-autoscaler-sync-period=2s",
            # Each controller fetches its own service-account token at start; the default 20 QPS throttles that.
            "--kube-api-qps=200", "--kube-api-burst=400",
        ],
        "kube-scheduler": [
            str(bin_dir / "kube-scheduler"),
            f"--kubeconfig={root / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1", f"--secure-port={ports.scheduler}",
            "--leader-elect=false", "--profiling=false", "--v=1",
        ],
        "kwok": [
            str(bin_dir / "kwok"),
            f"--kubeconfig={root / 'kwok.kubeconfig'}", f"--config={KWOK_STAGES}",
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
            f"--cidr={POD_CIDR}", "--node-ip=127.0.0.1", "--node-lease-duration-seconds=40",
        ],
    }


def fake_node(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "type": "kwok"},
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        # A zombie has exited; it only waits to be reaped by its parent.
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _pid_belongs_to(pid: int, root: Path) -> bool:
    """True if the process' command line mentions the cluster dir (guards against reused pids)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return f"{root}/" in cmdline


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # The parent may have died between fork and prctl, before the signal was armed.
    if os.getppid() != parent:
        os._exit(1)


@dataclass
class LocalCluster:
    """One control plane whose files (certs, etcd data, logs, kubeconfig) live under `root`."""

    root: Path
    bin_dir: Path = DEFAULT_BIN_DIR
    nodes: int = 3
    # True for test sessions: the components die with this process even on SIGKILL.
    bind_to_parent: bool = False
    ports: Ports | None = None
    pids: dict[str, int] = field(default_factory=dict)
    startup_seconds: float | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.bin_dir = Path(self.bin_dir).resolve()
        self._procs: dict[str, subprocess.Popen] = {}

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def server(self) -> str:
        if self.ports is None:
            raise ClusterError("the cluster has not been started")
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> "LocalCluster":
        missing = missing_binaries(self.bin_dir)
        if missing:
            raise ClusterError(f"missing {', '.join(missing)} in {self.bin_dir}: run `make tools`")
        started = time.monotonic()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self._start_once(started + timeout)
                break
            except ClusterError as exc:
                # Another process may take a port between choosing it and the component binding it.
                if "address already in use" not in str(exc) or attempt == PORT_ATTEMPTS:
                    raise
        self.startup_seconds = time.monotonic() - started
        self._save_state()
        return self

    def _start_once(self, deadline: float) -> None:
        self.stop()
        for stale in ("etcd", "pki", "logs"):
            shutil.rmtree(self.root / stale, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir()
        make_pki(self.root / "pki")
        self.ports = Ports.free()
        write_kubeconfig(self.kubeconfig, self.server, self.root / "pki", "admin")
        for user in ("controller-manager", "scheduler", "kwok"):
            write_kubeconfig(self.root / f"{user}.kubeconfig", self.server, self.root / "pki", user)
        try:
            commands = component_commands(self.root, self.bin_dir, self.ports)
            for name in COMPONENTS:
                self._spawn(name, commands[name])
                self._save_state()
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")
        with log:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.root, start_new_session=True,
                preexec_fn=functools.partial(_die_with_parent, os.getpid()) if self.bind_to_parent else None,
            )
        self._procs[name] = proc
        self.pids[name] = proc.pid

    def _save_state(self) -> None:
        state = {"pids": self.pids, "ports": vars(self.ports) if self.ports else None,
                 "server": self.server if self.ports else None, "kubeconfig": str(self.kubeconfig),
                 "startup_seconds": self.startup_seconds}
        tmp = self.root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.root / STATE_FILE)

    @classmethod
    def attach(cls, root: Path, bin_dir: Path = DEFAULT_BIN_DIR) -> "LocalCluster":
        """The cluster recorded in `root` by an earlier `up` (its processes may have died)."""
        root = Path(root).resolve()
        try:
            state = json.loads((root / STATE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ClusterError(f"no cluster recorded in {root}: {exc}") from None
        cluster = cls(root=root, bin_dir=bin_dir)
        cluster.pids = {name: int(pid) for name, pid in state.get("pids", {}).items()}
        cluster.ports = Ports(**state["ports"]) if state.get("ports") else None
        cluster.startup_seconds = state.get("startup_seconds")
        return cluster

    def running(self) -> dict[str, bool]:
        return {name: _pid_alive(pid) and _pid_belongs_to(pid, self.root) for name, pid in self.pids.items()}

    def stop(self, grace: float = 10.0) -> None:
        """Stops every recorded component (its whole process group) and waits for it to exit."""
        if not self.pids and (self.root / STATE_FILE).exists():
            with contextlib.suppress(ClusterError):
                self.pids = LocalCluster.attach(self.root, self.bin_dir).pids
        # Check ownership once, before signalling: an exiting process loses its command line early.
        owned = [n for n in self.pids if n in self._procs or _pid_belongs_to(self.pids[n], self.root)]
        # Clients first, then the API server, then etcd: each stops cleanly while its backend is up.
        for tier in (("kwok", "kube-scheduler", "kube-controller-manager"), ("kube-apiserver",), ("etcd",), None):
            names = [n for n in owned if (n in tier if tier else n not in COMPONENTS)]
            for name in names:
                self._signal(name, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for name in names:
                while self._alive(name) and time.monotonic() < deadline:
                    time.sleep(0.02)
                if self._alive(name):
                    self._signal(name, signal.SIGKILL)
                while self._alive(name):
                    time.sleep(0.02)
        self.pids.clear()
        self._procs.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.root / STATE_FILE).unlink()

    def _alive(self, name: str) -> bool:
        proc = self._procs.get(name)
        if proc is not None:
            if proc.poll() is None:
                return True
            # The leader is gone; make sure nothing else in its group outlives it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 0)
                return True
            return False
        return _pid_alive(self.pids[name])

    def _signal(self, name: str, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pids[name], sig)

    # -- readiness -------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        pki = self.root / "pki"
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
        """One admin request to the API server; returns (status, body) and never raises on HTTP errors."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self._ssl_context(), timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _check_components(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with code {proc.returncode} during start-up\n"
                                   + self.log_tail(name))

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"  {name}| {line}" for line in text[-lines:])

    def _wait_for(self, what: str, deadline: float, probe) -> None:
        last = "no answer yet"
        while True:
            self._check_components()
            try:
                ok, last = probe()
            except (OSError, ssl.SSLError) as exc:
                ok, last = False, str(exc)
            if ok:
                return
            if time.monotonic() > deadline:
                logs = "\n".join(self.log_tail(name) for name in COMPONENTS)
                raise ClusterError(f"timed out waiting for {what} ({last})\n{logs}")
            time.sleep(0.1)

    def _wait_ready(self, deadline: float) -> None:
        def readyz():
            status, body = self.request("GET", "/readyz", timeout=2)
            return status == 200, body.decode(errors="replace")[-300:]

        self._wait_for("kube-apiserver /readyz", deadline, readyz)

        def create_nodes():
            for index in range(self.nodes):
                status, body = self.request("POST", "/api/v1/nodes", fake_node(f"kwok-node-{index}"))
                if status not in (201, 409):
                    return False, f"creating a node: HTTP {status} {body[:200]!r}"
            return True, ""

        self._wait_for("the fake nodes to be created", deadline, create_nodes)

        def default_service_account():
            status, _ = self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
            return status == 200, f"HTTP {status}"

        self._wait_for("the default service account", deadline, default_service_account)

        def nodes_ready():
            status, body = self.request("GET", "/api/v1/nodes")
            if status != 200:
                return False, f"HTTP {status}"
            ready = [
                node["metadata"]["name"] for node in json.loads(body)["items"]
                if any(c["type"] == "Ready" and c["status"] == "True"
                       for c in node.get("status", {}).get("conditions", []))
            ]
            return len(ready) >= self.nodes, f"{len(ready)}/{self.nodes} nodes ready"

        self._wait_for("the fake nodes to become Ready", deadline, nodes_ready)

    # -- measurement -----------------------------------------------------------------------

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each component's whole process group."""
        usage = {name: 0 for name in self.pids}
        groups = {pid: name for name, pid in self.pids.items()}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                pgid = int(fields[2])
                if pgid in groups:
                    rss_kb = next(int(line.split()[1]) for line in (proc / "status").read_text().splitlines()
                                  if line.startswith("VmRSS:"))
                    usage[groups[pgid]] += rss_kb * 1024
            except (OSError, StopIteration, ValueError, IndexError):
                continue
        return usage


def _format_rss(usage: dict[str, int]) -> str:
    parts = [f"{name} {size / 2**20:.0f} MiB" for name, size in usage.items()]
    return f"total {sum(usage.values()) / 2**20:.0f} MiB ({', '.join(parts)})"


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("up", "start a cluster and return once it is ready"),
                            ("down", "stop the cluster recorded in --dir"),
                            ("status", "show the components, ports and memory of the cluster in --dir")):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--dir", type=Path, default=Path(".cluster"), help="cluster files (default .cluster)")
        cmd.add_argument("--bin-dir", type=Path, default=DEFAULT_BIN_DIR, help="built tools (default .tools/bin)")
        if name == "up":
            cmd.add_argument("--nodes", type=int, default=3, help="fake kwok nodes (default 3)")
            cmd.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for readiness")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            # A SIGTERM during start-up unwinds like Ctrl-C, so start() stops what it started.
            signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
            cluster = LocalCluster(root=args.dir, bin_dir=args.bin_dir, nodes=args.nodes)
            cluster.start(timeout=args.timeout)
            print(f"cluster ready in {cluster.startup_seconds:.1f}s: {cluster.server}")
            print(f"  export KUBECONFIG={cluster.kubeconfig}")
            print(f"  memory: {_format_rss(cluster.rss_bytes())}")
            print(f"  logs in {cluster.log_dir}; stop with `make cluster-down`")
        elif args.command == "down":
            if not (args.dir / STATE_FILE).exists():
                print(f"no cluster running in {args.dir}")
                return 0
            cluster = LocalCluster.attach(args.dir, args.bin_dir)
            cluster.stop()
            print(f"cluster in {args.dir} stopped")
        else:
            cluster = LocalCluster.attach(args.dir, args.bin_dir)
            alive = cluster.running()
            for name, pid in cluster.pids.items():
                print(f"{name:24} pid {pid:<8} {'running' if alive[name] else 'NOT RUNNING'}")
            print(f"server {cluster.server}\nkubeconfig {cluster.kubeconfig}")
            print(f"memory: {_format_rss(cluster.rss_bytes())}")
            return 0 if all(alive.values()) else 1
    except ClusterError as exc:
        print(f"localcluster: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
