"""`make demo-cluster` end to end, on the session's control plane and redis-server.

scripts/demo_cluster.sh runs with JOBPOOL_DEMO_KUBECONFIG / JOBPOOL_DEMO_QUEUE_URL, so it
starts the operator and the pods' stand-in workers but no second control plane. Every
process it starts inherits a unique JOBPOOL_DEMO_RUN value, which is how the tests find
anything it left running.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import secrets
import select
import signal
import subprocess
import time

import pytest
import redis

from tests.helpers import ROOT

pytestmark = pytest.mark.slow
SCRIPT = ROOT / "scripts" / "demo_cluster.sh"
JOBS = 800
POOL = "frames"
MAX_WORKERS = 5


def processes_with(marker: str) -> dict[int, str]:
    """Command lines of the live processes whose environment carries the marker, by pid."""
    found = {}
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f"JOBPOOL_DEMO_RUN={marker}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found[int(proc.name)] = (
                    (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
        except OSError:
            continue
    return found


@pytest.fixture
def demo_env(kube_cluster, kube_namespace, redis_server, tmp_path):
    marker = secrets.token_hex(8)
    env = {
        **kube_cluster.env,
        "JOBPOOL_DEMO_KUBECONFIG": kube_cluster.kubeconfig,
        "JOBPOOL_DEMO_QUEUE_URL": redis_server.url,
        "JOBPOOL_DEMO_NAMESPACE": kube_namespace,
        "JOBPOOL_DEMO_DIR": str(tmp_path / "demo"),
        "JOBS": str(JOBS),
        "JOBPOOL_DEMO_RUN": marker,
    }
    env.pop("KUBECONFIG", None)
    yield env
    leftovers = processes_with(marker)
    for pid, command in leftovers.items():
        print("left running:", pid, command)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    # Nothing may survive a run, whatever the test asserted.
    assert not leftovers


def pool_keys(redis_url: str, namespace: str) -> list[bytes]:
    with redis.Redis.from_url(redis_url) as client:
        return list(client.scan_iter(match=f"{{jobpool:{namespace}/{POOL}}}*"))


def test_demo_runs_end_to_end_and_leaves_nothing(demo_env, kube_cluster, kube_namespace, redis_server):
    started = time.monotonic()
    run = subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, env=demo_env, capture_output=True, text=True, timeout=280
    )
    elapsed = time.monotonic() - started
    out = run.stdout
    print(out, run.stderr, f"demo took {elapsed:.1f}s", sep="\n")
    assert run.returncode == 0, run.stderr

    for step in range(1, 10):
        assert f"== {step}. " in out
    # One local worker per worker pod, with the pod's name as its worker id.
    started_pods = re.findall(r"\[pods\] (\S+) is Ready: started its local", out)
    assert len(started_pods) == MAX_WORKERS
    assert all(name.startswith(f"{POOL}-workers-") for name in started_pods)
    logs = pathlib.Path(demo_env["JOBPOOL_DEMO_DIR"])
    assert sorted(p.name for p in logs.glob("worker-*.log")) == sorted(
        f"worker-{n}.log" for n in started_pods
    )
    assert all(f"[pods] {name} is terminating" in out for name in started_pods)
    # `jobpool status` lists the workers by the ids they registered with: the pods' names.
    assert all(re.search(rf"^ +{name} ", out, re.M) for name in started_pods)
    # Progress reached every job, and `jobpool status` agreed.
    assert re.search(rf"succeeded +{JOBS}/{JOBS} +dead-lettered 0 ", out)
    assert re.search(rf"submitted {JOBS} +succeeded {JOBS} ", out)
    assert out.index("worker pods: 0") > out.index("== 8. ")
    assert "Redis keys of the pool after:  0" in out
    assert "stopped: local workers, operator" in out

    # The real state agrees with what the demo printed.
    assert pool_keys(redis_server.url, kube_namespace) == []
    left = kube_cluster.kubectl("get", "jobpools,pods", "-n", kube_namespace, "-o", "name").stdout
    assert left.strip() == ""


def test_ctrl_c_tears_everything_down(demo_env, kube_namespace):
    process = subprocess.Popen(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        env=demo_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out = b""
    deadline = time.monotonic() + 120
    try:
        # Interrupt once local workers run, as a terminal's Ctrl-C does: SIGINT to the whole group.
        while b"is Ready: started its local" not in out:
            assert time.monotonic() < deadline, out.decode(errors="replace")
            assert process.poll() is None, out.decode(errors="replace")
            if select.select([process.stdout], [], [], 0.5)[0]:
                out += os.read(process.stdout.fileno(), 65536)
        assert processes_with(demo_env["JOBPOOL_DEMO_RUN"])
        os.killpg(process.pid, signal.SIGINT)
        rest, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = (out + rest).decode(errors="replace")
    print(text)
    assert process.returncode == 130
    assert "stopped: local workers, operator" in text.split("tearing down", 1)[-1]


def test_demo_on_the_real_node_runs_real_pods_and_leaves_nothing(real_node_ready, tmp_path):
    """REAL_NODE=1: the demo's own control plane with the real node; the chart's operator and
    Redis run as pods, the worker pods are containers of the example image."""
    marker = secrets.token_hex(8)
    env = {
        **os.environ,
        "REAL_NODE": "1",
        "JOBS": "1000",
        "JOBPOOL_DEMO_DIR": str(tmp_path / "demo"),
        "JOBPOOL_DEMO_RUN": marker,
    }
    env.pop("KUBECONFIG", None)
    run = subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    out = run.stdout
    print(out, run.stderr, sep="\n")
    try:
        assert run.returncode == 0, run.stderr[-3000:]
        for step in range(1, 10):
            assert f"== {step}. " in out
        assert "helm install" in out and "[pods]" not in out  # no local stand-ins: real containers
        assert re.search(r"^jp-operator-\S+ +1/1 +Running", out, re.M)
        assert re.search(rf"^pod/{POOL}-workers-\S+ +1/1 +Running .* jobpool-node", out, re.M)
        assert re.search(r"succeeded +1000/1000 +dead-lettered 0 ", out)
        assert out.index("worker pods: 0") > out.index("== 8. ")
        assert "Redis keys of the pool after:  0" in out
    finally:
        leftovers = processes_with(marker)
        for pid in leftovers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert not leftovers, leftovers
