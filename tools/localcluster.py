#!/usr/bin/env python3
"""A real Kubernetes control plane as local processes on 127.0.0.1, without Docker.

etcd, kube-apiserver (TLS, client certificates, service-account keys, RBAC),
kube-controller-manager, kube-scheduler and kwok (the kubelets of a few fake nodes), all
built by `make tools` into .tools/bin. Ports are chosen free at start, so clusters can run
side by side. Standard library plus the `openssl` command only.

With --real-node (root, Linux) one real node joins as well: kubelet and kube-proxy built from
the same Kubernetes module, Debian's containerd, runc and CNI plugins, the project's images
loaded into it. It uses only addresses on interfaces the cluster creates, and `down` removes
every process, mount, interface, iptables rule and cgroup it made. One real node runs per machine.

    python tools/localcluster.py up --dir .cluster [--real-node]   # prints the kubeconfig path
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
import shlex
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
# The real node: an interface of its own carries the node's (and the API server's) address, a
# bridge without ports (these kernels lack the dummy link type); its pods live on a CNI bridge
# in a subnet apart from kwok's fake pod IPs.
NODE_NAME = "jobpool-node"
NODE_IP = "10.254.0.1"
NODE_INTERFACE = "jobpool0"
NODE_BRIDGE = "jobpool-cni0"
NODE_POD_SUBNET = "10.245.0.0/24"
NODE_LABEL = "jobpool.dev/node"  # value "real" on the real node
NODE_BINARIES = ("kubelet", "kube-proxy", "coredns")
CLUSTER_DOMAIN = "cluster.local"
NODE_IMAGES = (
    "jobpool-pause",
    "jobpool-network-policies",
    "jobpool-operator",
    "jobpool-worker",
    "jobpool-redis",
    "jobpool-examples",
)
NETWORK_POLICIES = REPO_ROOT / "tools" / "kube-network-policies" / "install.yaml"
# The machine's one real node: its cluster dir (`cluster`), containerd's sockets and the
# kubelet's root dir, whose sockets' paths must stay short (a unix socket path has at most 104
# bytes; test temp dirs are longer).
NODE_RUN_DIR = Path("/run/jobpool-node")
NODE_RECORD = NODE_RUN_DIR / "cluster"
CNI_BIN_DIR = Path("/usr/lib/cni")
# Sysctls the kubelet (protectKernelDefaults: false) or the node's networking may change.
NODE_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
)
NODE_CHAIN_PREFIXES = ("KUBE-", "CNI-")
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
    def free(cls) -> Ports:
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
    """A CA, the apiserver's serving cert, client certs (also those of the real node's kubelet and
    kube-proxy) and the service-account key pair (ECDSA P-256)."""
    if shutil.which("openssl") is None:
        raise ClusterError("the `openssl` command is required (Debian: apt-get install openssl)")
    pki.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=jobpool-local-ca",
        cwd=pki,
    )
    leaves = {
        "apiserver": (
            "/CN=kube-apiserver",
            f"subjectAltName=IP:127.0.0.1,IP:{SERVICE_IP},IP:{NODE_IP},DNS:localhost,DNS:kubernetes,"
            "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
            "DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth",
        ),
        "admin": ("/O=system:masters/CN=jobpool-admin", "extendedKeyUsage=clientAuth"),
        "controller-manager": ("/CN=system:kube-controller-manager", "extendedKeyUsage=clientAuth"),
        "scheduler": ("/CN=system:kube-scheduler", "extendedKeyUsage=clientAuth"),
        # kwok writes node and pod status for every fake node, like a kubelet with wide rights.
        "kwok": ("/O=system:masters/CN=kwok", "extendedKeyUsage=clientAuth"),
        # The real node: its kubelet (Node authorizer), kube-proxy, and the API server to kubelets.
        "node": (f"/O=system:nodes/CN=system:node:{NODE_NAME}", "extendedKeyUsage=clientAuth"),
        "kube-proxy": ("/CN=system:kube-proxy", "extendedKeyUsage=clientAuth"),
        "coredns": ("/CN=system:coredns", "extendedKeyUsage=clientAuth"),
        "apiserver-kubelet-client": (
            "/O=system:masters/CN=kube-apiserver-kubelet-client",
            "extendedKeyUsage=clientAuth",
        ),
    }
    for name, (subject, extensions) in leaves.items():
        (pki / f"{name}.ext").write_text(extensions + "\n")
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=pki)
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.crt",
            cwd=pki,
        )
    # The aggregation layer's own CA and client certificate (front proxy), as kubeadm makes them.
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "front-proxy-ca.key",
        "-out",
        "front-proxy-ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=jobpool-local-front-proxy-ca",
        cwd=pki,
    )
    (pki / "front-proxy-client.ext").write_text("extendedKeyUsage=clientAuth\n")
    _openssl(
        "req",
        *ec,
        "-keyout",
        "front-proxy-client.key",
        "-out",
        "front-proxy-client.csr",
        "-subj",
        "/CN=front-proxy-client",
        cwd=pki,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "front-proxy-client.csr",
        "-CA",
        "front-proxy-ca.crt",
        "-CAkey",
        "front-proxy-ca.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        "front-proxy-client.ext",
        "-out",
        "front-proxy-client.crt",
        cwd=pki,
    )
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
        "clusters": [
            {
                "name": "jobpool-local",
                "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(f"{user}.crt"),
                    "client-key-data": b64(f"{user}.key"),
                },
            }
        ],
        "contexts": [{"name": "jobpool-local", "context": {"cluster": "jobpool-local", "user": user}}],
        "current-context": "jobpool-local",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


def component_commands(
    root: Path, bin_dir: Path, ports: Ports, real_node: bool = False
) -> dict[str, list[str]]:
    pki = root / "pki"
    etcd_url = f"http://127.0.0.1:{ports.etcd_client}"
    peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
    address = NODE_IP if real_node else "127.0.0.1"
    if real_node:
        # Pods reach the API through the kubernetes Service (endpoint: the node's own address);
        # the kubelet's identity needs the Node authorizer; logs and exec go to the node's IP.
        apiserver_access = [
            "--authorization-mode=Node,RBAC",
            "--endpoint-reconciler-type=lease",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
        ]
    else:
        # No pod can reach the API through the kubernetes Service here, and loopback may not be advertised.
        apiserver_access = ["--authorization-mode=RBAC", "--endpoint-reconciler-type=none"]
    return {
        "etcd": [
            str(bin_dir / "etcd"),
            "--name=jobpool",
            f"--data-dir={root / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=jobpool={peer_url}",
            "--initial-cluster-state=new",
            # A throw-away cluster: durability on power loss is not worth the fsync latency.
            "--unsafe-no-fsync",
            "--log-level=warn",
            "--quota-backend-bytes=2147483648",
        ],
        "kube-apiserver": [
            str(bin_dir / "kube-apiserver"),
            f"--bind-address={address}",
            f"--advertise-address={address}",
            f"--secure-port={ports.apiserver}",
            f"--etcd-servers={etcd_url}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            *apiserver_access,
            # as many production clusters: setting blockOwnerDeletion needs update on the owner's finalizers
            "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement",
            # the aggregation layer, for APIServices such as the operator's external metrics
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ],
        "kube-controller-manager": [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={root / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.controller_manager}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*",
            "--profiling=false",
            "--v=1",
            # HPAs are evaluated every 2 s (default 15 s), so tests see them act quickly
            "--horizontal-pod-autoscaler-sync-period=2s",
            # Each controller fetches its own service-account token at start; the default 20 QPS throttles that.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
        ],
        "kube-scheduler": [
            str(bin_dir / "kube-scheduler"),
            f"--kubeconfig={root / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.scheduler}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ],
        "kwok": [
            str(bin_dir / "kwok"),
            f"--kubeconfig={root / 'kwok.kubeconfig'}",
            f"--config={KWOK_STAGES}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
            f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1",
            "--node-lease-duration-seconds=40",
        ],
    }


def fake_node(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
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
    # One real node (kubelet, containerd) joins the kwok nodes: see RealNode.
    real_node: bool = False
    # NetworkPolicy enforced on the real node (the kernel has nftables' queue expression).
    network_policy: bool = False
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
        return f"https://{NODE_IP if self.real_node else '127.0.0.1'}:{self.ports.apiserver}"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> LocalCluster:
        missing = missing_binaries(self.bin_dir)
        if missing:
            raise ClusterError(f"missing {', '.join(missing)} in {self.bin_dir}: run `make tools`")
        if self.real_node and RealNode.missing(self.bin_dir):
            raise ClusterError("a real node needs: " + "; ".join(RealNode.missing(self.bin_dir)))
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
        for stale in ("etcd", "pki", "logs", "node"):
            shutil.rmtree(self.root / stale, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir()
        make_pki(self.root / "pki")
        node = RealNode(self.root) if self.real_node else None
        if node:
            node.claim_machine()
            self._save_state()  # from here on, `down` tears the node down
            node.prepare()
        self.ports = Ports.free()
        write_kubeconfig(self.kubeconfig, self.server, self.root / "pki", "admin")
        for user in ("controller-manager", "scheduler", "kwok"):
            write_kubeconfig(self.root / f"{user}.kubeconfig", self.server, self.root / "pki", user)
        try:
            commands = component_commands(self.root, self.bin_dir, self.ports, self.real_node)
            for name in COMPONENTS:
                self._spawn(name, commands[name])
                self._save_state()
            self._wait_ready(deadline)
            if node:
                self._start_node(node, deadline)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")
        with log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
                preexec_fn=functools.partial(_die_with_parent, os.getpid()) if self.bind_to_parent else None,
            )
        self._procs[name] = proc
        self.pids[name] = proc.pid

    def _start_node(self, node: RealNode, deadline: float) -> None:
        with contextlib.ExitStack() as stack:
            names = (
                "kubelet",
                "kubelet_healthz",
                "proxy_healthz",
                "proxy_metrics",
                "dns_health",
                "dns_ready",
            )
            socks = [stack.enter_context(socket.socket()) for _ in names]
            for sock in socks:
                sock.bind(("127.0.0.1", 0))
            ports = {name: sock.getsockname()[1] for name, sock in zip(names, socks)}
        node.write_files(self, ports)
        commands = node.commands(self.bin_dir, ports)
        self._spawn("containerd", commands["containerd"])
        self._save_state()
        self._wait_for("containerd", deadline, lambda: (node.socket.exists(), "no socket yet"))
        node.load_images()
        for path, body in COREDNS_RBAC:
            status, answer = self.request("POST", path, body)
            if status not in (201, 409):
                raise ClusterError(f"creating CoreDNS's RBAC: HTTP {status} {answer[:200]!r}")
        for name in ("coredns", "kubelet", "kube-proxy"):
            self._spawn(name, commands[name])
            self._save_state()

        def dns_ready():
            url = f"http://127.0.0.1:{ports['dns_ready']}/ready"
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200, "not ready"

        self._wait_for("CoreDNS", deadline, dns_ready)

        def node_ready():
            status, body = self.request("GET", f"/api/v1/nodes/{NODE_NAME}")
            if status != 200:
                return False, f"HTTP {status}"
            conditions = json.loads(body).get("status", {}).get("conditions", [])
            ready = [c for c in conditions if c["type"] == "Ready"]
            return bool(ready) and ready[0]["status"] == "True", str(ready[:1])

        self._wait_for(f"the real node {NODE_NAME} to become Ready", deadline, node_ready)
        self.network_policy = nft_queue_supported()
        self._save_state()
        if self.network_policy:
            self._start_network_policies(deadline)

    def _start_network_policies(self, deadline: float) -> None:
        subprocess.run(
            [str(self.bin_dir / "kubectl"), "apply", "-f", str(NETWORK_POLICIES)],
            env=self.env(),
            check=True,
            capture_output=True,
        )

        def network_policies_running():
            status, body = self.request(
                "GET", "/api/v1/namespaces/kube-system/pods?labelSelector=app%3Dkube-network-policies"
            )
            pods = json.loads(body).get("items", []) if status == 200 else []
            ready = [
                p
                for p in pods
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p.get("status", {}).get("conditions", [])
                )
            ]
            return bool(ready), f"{len(pods)} pods, {len(ready)} ready"

        self._wait_for("kube-network-policies", deadline, network_policies_running)

    def _save_state(self) -> None:
        state = {
            "pids": self.pids,
            "ports": vars(self.ports) if self.ports else None,
            "real_node": self.real_node,
            "network_policy": self.network_policy,
            "server": self.server if self.ports else None,
            "kubeconfig": str(self.kubeconfig),
            "startup_seconds": self.startup_seconds,
        }
        tmp = self.root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.root / STATE_FILE)

    @classmethod
    def attach(cls, root: Path, bin_dir: Path = DEFAULT_BIN_DIR) -> LocalCluster:
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
        cluster.real_node = state.get("real_node", False)
        cluster.network_policy = state.get("network_policy", False)
        return cluster

    def running(self) -> dict[str, bool]:
        return {name: _pid_alive(pid) and _pid_belongs_to(pid, self.root) for name, pid in self.pids.items()}

    def stop(self, grace: float = 10.0) -> None:
        """Stops every recorded component (its whole process group) and waits for it to exit."""
        if not self.pids and (self.root / STATE_FILE).exists():
            with contextlib.suppress(ClusterError):
                recorded = LocalCluster.attach(self.root, self.bin_dir)
                self.pids, self.real_node = recorded.pids, recorded.real_node
        # Check ownership once, before signalling: an exiting process loses its command line early.
        owned = [n for n in self.pids if n in self._procs or _pid_belongs_to(self.pids[n], self.root)]
        # Clients first, then the API server, then etcd: each stops cleanly while its backend is up.
        # containerd goes last: the node's teardown then kills what it ran.
        tiers = (
            NODE_BINARIES,
            ("kwok", "kube-scheduler", "kube-controller-manager"),
            ("kube-apiserver",),
            ("etcd",),
            None,
        )
        for tier in tiers:
            names = [n for n in owned if (n in tier if tier else n not in COMPONENTS + NODE_BINARIES)]
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
        if self.real_node:
            RealNode(self.root).teardown()
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

    def request(
        self, method: str, path: str, body: dict | None = None, timeout: float = 5.0
    ) -> tuple[int, bytes]:
        """One admin request to the API server; returns (status, body) and never raises on HTTP errors."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.server + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, context=self._ssl_context(), timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _check_components(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise ClusterError(
                    f"{name} exited with code {proc.returncode} during start-up\n" + self.log_tail(name)
                )

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
                node["metadata"]["name"]
                for node in json.loads(body)["items"]
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in node.get("status", {}).get("conditions", [])
                )
            ]
            return len(ready) >= self.nodes, f"{len(ready)}/{self.nodes} nodes ready"

        self._wait_for("the fake nodes to become Ready", deadline, nodes_ready)

    # -- measurement -----------------------------------------------------------------------

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each component's whole process group."""
        usage = dict.fromkeys(self.pids, 0)
        groups = {pid: name for name, pid in self.pids.items()}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                pgid = int(fields[2])
                if pgid in groups:
                    rss_kb = next(
                        int(line.split()[1])
                        for line in (proc / "status").read_text().splitlines()
                        if line.startswith("VmRSS:")
                    )
                    usage[groups[pgid]] += rss_kb * 1024
            except (OSError, StopIteration, ValueError, IndexError):
                continue
        return usage


# -- the real node ---------------------------------------------------------------------------


def _run(*command: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, input=input, capture_output=True)
    if check and result.returncode != 0:
        raise ClusterError(
            f"`{' '.join(command)}` exited with {result.returncode}: "
            f"{result.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return result


def node_chain_cleanup(rules: str) -> list[list[str]]:
    """iptables arguments that remove the node's chains (KUBE-*, CNI-*) from one table, given
    its `iptables -S` output: first every jump into them from other chains, then the chains."""
    lines = [shlex.split(line) for line in rules.splitlines() if line.strip()]
    ours = [words[1] for words in lines if words[0] == "-N" and words[1].startswith(NODE_CHAIN_PREFIXES)]
    commands = []
    for words in lines:
        if (
            words[0] == "-A"
            and not words[1].startswith(NODE_CHAIN_PREFIXES)
            and any(chain in words for chain in ours)
        ):
            commands.append(["-D", *words[1:]])
    commands += [["-F", chain] for chain in ours] + [["-X", chain] for chain in ours]
    return commands


def kubelet_config(node: Path, pki: Path, ports: dict[str, int]) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports["kubelet_healthz"],
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{NODE_RUN_DIR / 'containerd.sock'}",
        # These VMs: cgroup v1 without systemd, no swap accounting, no CAP_SYS_RESOURCE.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "protectKernelDefaults": False,
        "cgroupRoot": f"/{NODE_NAME}",
        "podLogsDir": str(node / "pod-logs"),
        # Pods resolve cluster names only (CoreDNS on the node's address), nothing outside.
        "resolvConf": "",
        "clusterDNS": [NODE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "serializeImagePulls": False,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusReportFrequency": "10s",
        "fileCheckFrequency": "1s",
        "syncFrequency": "10s",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
    }


def containerd_config(node: Path) -> str:
    state = node / "containerd"
    return f"""version = 2
root = "{state / "root"}"
state = "{state / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.internal.v1.opt", "io.containerd.grpc.v1.introspection"]
[grpc]
  address = "{NODE_RUN_DIR / "containerd.sock"}"
[ttrpc]
  address = "{NODE_RUN_DIR / "containerd.sock.ttrpc"}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/jobpool-pause:dev"
  # Without CAP_SYS_RESOURCE every sandbox fails ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{node / "cni" / "net.d"}"
"""


def cni_config(node: Path) -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": "jobpool",
        "plugins": [
            {
                "type": "bridge",
                "bridge": NODE_BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NODE_POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def corefile(node: Path, ports: dict[str, int]) -> str:
    return f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{ports["dns_health"]}
    ready 127.0.0.1:{ports["dns_ready"]}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {node / "coredns.kubeconfig"} jobpool-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
}}
"""


# What CoreDNS reads from the API, for its own identity (system:coredns).
COREDNS_RBAC = (
    (
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "jobpool:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services", "namespaces", "pods"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
    ),
    (
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "jobpool:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "jobpool:coredns",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}],
        },
    ),
)


def nft_queue_supported() -> bool:
    """Whether the kernel has nftables' queue expression, which kube-network-policies needs
    (CONFIG_NFT_QUEUE; some VM kernels lack it and cannot load modules)."""
    table = ("inet", "jobpool-probe")
    try:
        _run("nft", "add", "table", *table)
        _run("nft", "add", "chain", *table, "probe")
        return (
            _run(
                "nft", "add", "rule", *table, "probe", "queue", "num", "100", "bypass", check=False
            ).returncode
            == 0
        )
    except ClusterError:
        return False
    finally:
        _run("nft", "delete", "table", *table, check=False)


def _cgroup_hierarchies() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    return (
        [
            path
            for path in base.iterdir()
            if path.is_dir() and not path.is_symlink() and (path / "cgroup.procs").exists()
        ]
        if base.is_dir()
        else []
    )


def _docker_host() -> str:
    script = REPO_ROOT / "tools" / "images" / "images.sh"
    return _run("bash", str(script), "docker-host").stdout.decode().strip()


@dataclass
class RealNode:
    """The machine's one real node, its files under `<cluster>/node`."""

    cluster_root: Path

    @property
    def root(self) -> Path:
        return self.cluster_root / "node"

    @property
    def socket(self) -> Path:
        return NODE_RUN_DIR / "containerd.sock"

    # -- checks and set-up, before the control plane starts --------------------------------

    @staticmethod
    def missing(bin_dir: Path) -> list[str]:
        """What this machine lacks for a real node, each with how to get it."""
        problems = []
        if sys.platform != "linux" or os.geteuid() != 0:
            problems.append("root (a kubelet, containerd and network set-up)")
        problems += [
            f"{bin_dir / name} (bash tools/build.sh kubernetes-node coredns)"
            for name in NODE_BINARIES
            if not os.access(bin_dir / name, os.X_OK)
        ]
        problems += [
            f"{name} (apt-get install containerd runc)"
            for name in ("containerd", "runc", "ctr")
            if shutil.which(name) is None
        ]
        problems += [
            f"{CNI_BIN_DIR / name} (apt-get install containernetworking-plugins)"
            for name in ("bridge", "host-local", "loopback", "portmap")
            if not (CNI_BIN_DIR / name).exists()
        ]
        problems += [
            f"{name} (apt-get install iproute2 iptables nftables)"
            for name in ("ip", "iptables", "nft")
            if shutil.which(name) is None
        ]
        return problems

    def claim_machine(self) -> None:
        """Records this cluster as the machine's real node, first cleaning up after a dead one."""
        with contextlib.suppress(FileNotFoundError):
            other, claimer = NODE_RECORD.read_text().split()
            other = Path(other)
            if other != self.cluster_root:
                state = other / STATE_FILE
                pids = json.loads(state.read_text()).get("pids", {}) if state.exists() else {}
                # The process starting it (before its components run), or its components.
                if _pid_alive(int(claimer)) or any(
                    _pid_alive(pid) and _pid_belongs_to(pid, other) for pid in pids.values()
                ):
                    raise ClusterError(
                        f"a real node of the cluster in {other} runs on this machine: "
                        f"stop it first (`python tools/localcluster.py down --dir {other}`)"
                    )
            RealNode(other).teardown()
        self.root.mkdir(parents=True, exist_ok=True)
        NODE_RUN_DIR.mkdir(exist_ok=True)
        NODE_RECORD.write_text(f"{self.cluster_root}\n{os.getpid()}\n")

    def prepare(self) -> None:
        """The node's address, recorded sysctls and cgroup root: what the API server needs first."""
        saved = {}
        for key in NODE_SYSCTLS:
            with contextlib.suppress(OSError):
                saved[key] = (Path("/proc/sys") / key).read_text().strip()
        (self.root / "sysctls.json").write_text(json.dumps(saved, indent=2) + "\n")
        _run("ip", "link", "add", NODE_INTERFACE, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_IP}/32", "dev", NODE_INTERFACE)
        _run("ip", "link", "set", NODE_INTERFACE, "up")
        for key in ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"):
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / key).write_text("1\n")
        for hierarchy in _cgroup_hierarchies():
            cgroup = hierarchy / NODE_NAME
            cgroup.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):  # a new cpuset is empty: copy the parent's
                if (cgroup / name).exists() and not (cgroup / name).read_text().strip():
                    (cgroup / name).write_text((hierarchy / name).read_text())

    # -- start, once the API server answers -------------------------------------------------

    def write_files(self, cluster: LocalCluster, ports: dict[str, int]) -> None:
        pki = cluster.root / "pki"
        for user in ("node", "kube-proxy", "coredns"):
            write_kubeconfig(self.root / f"{user}.kubeconfig", cluster.server, pki, user)
        (self.root / "Corefile").write_text(corefile(self.root, ports))
        (self.root / "kubelet.yaml").write_text(json.dumps(kubelet_config(self.root, pki, ports), indent=2))
        (self.root / "containerd.toml").write_text(containerd_config(self.root))
        (self.root / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        (self.root / "cni" / "net.d" / "10-jobpool.conflist").write_text(
            json.dumps(cni_config(self.root), indent=2)
        )
        (self.root / "pod-logs").mkdir(exist_ok=True)

    def commands(self, bin_dir: Path, ports: dict[str, int]) -> dict[str, list[str]]:
        return {
            "containerd": ["containerd", f"--config={self.root / 'containerd.toml'}"],
            "kubelet": [
                str(bin_dir / "kubelet"),
                f"--config={self.root / 'kubelet.yaml'}",
                f"--kubeconfig={self.root / 'node.kubeconfig'}",
                f"--root-dir={NODE_RUN_DIR / 'kubelet'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                f"--node-labels={NODE_LABEL}=real",
                "--v=1",
            ],
            "coredns": [str(bin_dir / "coredns"), "-conf", str(self.root / "Corefile")],
            "kube-proxy": [
                str(bin_dir / "kube-proxy"),
                f"--kubeconfig={self.root / 'kube-proxy.kubeconfig'}",
                f"--hostname-override={NODE_NAME}",
                "--proxy-mode=iptables",
                f"--cluster-cidr={NODE_POD_SUBNET}",
                f"--nodeport-addresses={NODE_IP}/32",
                f"--healthz-bind-address=127.0.0.1:{ports['proxy_healthz']}",
                f"--metrics-bind-address=127.0.0.1:{ports['proxy_metrics']}",
                # Leave the machine's conntrack sysctls alone.
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0s",
                "--conntrack-tcp-timeout-close-wait=0s",
                "--v=1",
            ],
        }

    def load_images(self) -> None:
        """The project's images and the node's own (`make real-node`) into its containerd."""
        env = dict(os.environ, DOCKER_HOST=_docker_host())
        names = [f"{image}:dev" for image in NODE_IMAGES]
        missing = [
            name
            for name in names
            if subprocess.run(["docker", "image", "inspect", name], env=env, capture_output=True).returncode
            != 0
        ]
        if missing:
            raise ClusterError(f"images {', '.join(missing)} are missing: run `make real-node`")
        save = subprocess.Popen(["docker", "save", *names], env=env, stdout=subprocess.PIPE)
        result = subprocess.run(
            ["ctr", "-a", str(self.socket), "-n", "k8s.io", "images", "import", "-"],
            stdin=save.stdout,
            capture_output=True,
        )
        save.stdout.close()
        if save.wait() != 0 or result.returncode != 0:
            raise ClusterError(f"loading images into the node failed: {result.stderr.decode()[-500:]}")

    # -- teardown: everything the node made, also after a crash ----------------------------

    def teardown(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if Path(NODE_RECORD.read_text().split()[0]) != self.cluster_root:
                return  # the machine's node belongs to another cluster: leave it alone
        self._kill_pods()
        self._kill_shims()
        self._unmount()
        for interface in (NODE_BRIDGE, NODE_INTERFACE):
            _run("ip", "link", "delete", interface, check=False)
        self._remove_chains()
        self._remove_nft_tables()
        self._remove_cgroups()
        self._restore_sysctls()
        with contextlib.suppress(FileNotFoundError):
            if Path(NODE_RECORD.read_text().split()[0]) == self.cluster_root:
                shutil.rmtree(NODE_RUN_DIR)

    def _kill_pods(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = {
                int(pid)
                for hierarchy in _cgroup_hierarchies()
                for procs in (hierarchy / NODE_NAME).rglob("cgroup.procs")
                for pid in procs.read_text().split()
            }
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def _kill_shims(self) -> None:
        marker = str(self.socket).encode()
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError):
                    cmdline = (proc / "cmdline").read_bytes()
                    if b"containerd-shim" in cmdline and marker in cmdline:
                        os.kill(int(proc.name), signal.SIGKILL)

    def _unmount(self) -> None:
        prefixes = (f"{self.root}/", f"{NODE_RUN_DIR}/")
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        ours = [mount for mount in mounts if mount.startswith(prefixes)]
        # The pods' network namespaces, made by containerd's CRI under /run/netns.
        ours += [mount for mount in mounts if mount.startswith(("/run/netns/cni-", "/var/run/netns/cni-"))]
        for mount in sorted(set(ours), key=len, reverse=True):
            _run("umount", "-l", mount, check=False)
            if "/netns/cni-" in mount:
                with contextlib.suppress(OSError):
                    Path(mount).unlink()
        with contextlib.suppress(OSError):  # made by containerd; kept if anything else uses it
            Path("/run/netns").rmdir()

    def _remove_chains(self) -> None:
        for tool in ("iptables", "ip6tables"):
            if shutil.which(tool) is None:
                continue
            for table in ("filter", "nat", "mangle"):
                listed = _run(tool, "-w", "-t", table, "-S", check=False)
                for args in node_chain_cleanup(listed.stdout.decode()):
                    _run(tool, "-w", "-t", table, *args, check=False)

    def _remove_nft_tables(self) -> None:
        """kube-network-policies' own nftables table (a killed pod cannot remove it)."""
        if shutil.which("nft") is None:
            return
        listed = _run("nft", "list", "tables", check=False).stdout.decode()
        for line in listed.splitlines():
            words = line.split()
            if len(words) == 3 and words[2] == "kube-network-policies":
                _run("nft", "delete", "table", words[1], words[2], check=False)

    def _remove_cgroups(self) -> None:
        for hierarchy in _cgroup_hierarchies():
            top = hierarchy / NODE_NAME
            if top.is_dir():
                for cgroup in sorted(
                    (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
                ):
                    with contextlib.suppress(OSError):
                        cgroup.rmdir()
                with contextlib.suppress(OSError):
                    top.rmdir()

    def _restore_sysctls(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads((self.root / "sysctls.json").read_text())
            for key, value in saved.items():
                with contextlib.suppress(OSError):
                    if (Path("/proc/sys") / key).read_text().strip() != value:
                        (Path("/proc/sys") / key).write_text(value + "\n")
            (self.root / "sysctls.json").unlink()


def _format_rss(usage: dict[str, int]) -> str:
    parts = [f"{name} {size / 2**20:.0f} MiB" for name, size in usage.items()]
    return f"total {sum(usage.values()) / 2**20:.0f} MiB ({', '.join(parts)})"


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "start a cluster and return once it is ready"),
        ("down", "stop the cluster recorded in --dir"),
        ("status", "show the components, ports and memory of the cluster in --dir"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument(
            "--dir", type=Path, default=Path(".cluster"), help="cluster files (default .cluster)"
        )
        cmd.add_argument(
            "--bin-dir", type=Path, default=DEFAULT_BIN_DIR, help="built tools (default .tools/bin)"
        )
        if name == "up":
            cmd.add_argument("--nodes", type=int, default=3, help="fake kwok nodes (default 3)")
            cmd.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for readiness")
            cmd.add_argument(
                "--real-node",
                action="store_true",
                help=f"add one real node, {NODE_NAME} (root; the images of `make images`)",
            )
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            # A SIGTERM during start-up unwinds like Ctrl-C, so start() stops what it started.
            signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
            cluster = LocalCluster(
                root=args.dir, bin_dir=args.bin_dir, nodes=args.nodes, real_node=args.real_node
            )
            cluster.start(timeout=args.timeout)
            print(f"cluster ready in {cluster.startup_seconds:.1f}s: {cluster.server}")
            print(f"  export KUBECONFIG={cluster.kubeconfig}")
            print(f"  memory: {_format_rss(cluster.rss_bytes())}")
            if cluster.real_node:
                print(f"  real node {NODE_NAME} ({NODE_IP}): select it with nodeSelector {NODE_LABEL}: real")
                if not cluster.network_policy:
                    print(
                        "  NetworkPolicy is NOT enforced: this kernel lacks nftables' queue "
                        "expression (CONFIG_NFT_QUEUE), which kube-network-policies needs"
                    )
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
