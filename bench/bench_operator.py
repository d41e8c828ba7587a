"""`make bench-operator`: the operator's figures on the local control plane and a real Redis.

- reconcile: apply N JobPools (default 200) in one go; seconds from the last apply until
  every pool reports Ready=True (its Deployment created and its kwok pods ready)
- memory: the operator process's RSS after all pools are Ready (and its peak)
- idle cost: with every pool Ready and no job, over a window of --idle-seconds, the writes
  the API server served on the operator's resources (deltas of its apiserver_request_total)
  and the commands the operator sent Redis (MONITOR, commands run inside scripts not
  counted), per pool per second
- autoscaler reaction: an autoscaled pool at zero workers gets a burst of jobs; time from
  the submit returning to the Deployment's spec.replicas change arriving on a watch,
  median (and max) of several spikes

Usage: python bench/bench_operator.py [--pools N] [--spikes N] [--idle-seconds S]
Set JOBPOOL_CLUSTER_DIR=.cluster to use a cluster from `make cluster-up`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis as redis_lib  # noqa: E402
import yaml  # noqa: E402

from jobpool.queue import open_queue  # noqa: E402
from tests.fixtures.redis import RedisServer, free_port  # noqa: E402

BIN = ROOT / ".tools" / "bin"


def load_localcluster():
    spec = importlib.util.spec_from_file_location("jobpool_localcluster", ROOT / "tools" / "localcluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def kubectl(env, *args, input=None):
    return subprocess.run(
        [str(BIN / "kubectl"), *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pool(name: str, **spec) -> dict:
    spec.setdefault("worker", {"image": "registry.example/jobpool-examples:0.1", "handler": "tasks:square"})
    return {"apiVersion": "jobpool.dev/v1alpha1", "kind": "JobPool", "metadata": {"name": name}, "spec": spec}


class ReadyWatch(threading.Thread):
    """The Ready condition of every JobPool of a namespace, from one watch stream: listing 1,000
    JobPools every second would load the API server more than the operator does."""

    def __init__(self, env, namespace: str):
        super().__init__(daemon=True)
        self.ready: dict[str, bool] = {}
        self.process = subprocess.Popen(
            [
                str(BIN / "kubectl"),
                "get",
                "jobpools",
                "-n",
                namespace,
                "--watch",
                "-o",
                'jsonpath={.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\\n"}',
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self) -> None:
        for line in self.process.stdout:
            name, _, status = line.strip().partition(" ")
            if name:
                self.ready[name] = status == "True"

    def count(self) -> int:
        return sum(self.ready.values())


class ReplicaWatch(threading.Thread):
    """Records when each new spec.replicas of one Deployment arrives on a watch stream."""

    def __init__(self, env, namespace: str, name: str):
        super().__init__(daemon=True)
        self.changes: list[tuple[float, int]] = []
        self.process = subprocess.Popen(
            [
                str(BIN / "kubectl"),
                "get",
                "deployment",
                name,
                "-n",
                namespace,
                "--watch",
                "-o",
                'jsonpath={.spec.replicas}{"\\n"}',
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self) -> None:
        for line in self.process.stdout:
            if line.strip():
                self.changes.append((time.monotonic(), int(line)))

    def replicas(self) -> int | None:
        return self.changes[-1][1] if self.changes else None


# (resource, subresource) the operator writes; kwok's pod status and node leases, the controllers'
# Deployment status and the operator's one leader Lease are not per-pool costs.
OPERATOR_WRITES = {
    ("jobpools", ""),
    ("jobpools", "status"),
    ("deployments", ""),
    ("services", ""),
    ("poddisruptionbudgets", ""),
    ("pods", ""),
    ("secrets", ""),
    ("events", ""),
}
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION", "CREATE", "UPDATE"}


def api_writes(env) -> dict[tuple[str, str, str], int]:
    """The API server's own count of write requests, by (verb, resource, subresource), on OPERATOR_WRITES."""
    counts: dict[tuple[str, str, str], int] = {}
    for line in kubectl(env, "get", "--raw", "/metrics").splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.rindex("}")].split(","))
        labels = {key: value.strip('"') for key, value in labels.items()}
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        if key[0] in WRITE_VERBS and key[1:] in OPERATOR_WRITES:
            counts[key] = counts.get(key, 0) + int(float(line.rsplit(" ", 1)[1]))
    return counts


def redis_commands(url: str, seconds: float) -> dict[str, int]:
    """Commands clients sent Redis during `seconds` (MONITOR; the ones scripts run are not round trips)."""
    client = redis_lib.Redis.from_url(url)
    counts: dict[str, int] = {}
    with client.monitor() as monitor:
        start = None
        for command in monitor.listen():
            start = command["time"] if start is None else start
            if command["time"] - start > seconds:
                break
            if command["client_type"] != "lua":
                name = command["command"].split(" ", 1)[0].upper()
                counts[name] = counts.get(name, 0) + 1
    client.close()
    return counts


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit(f"bench: timed out waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=200)
    parser.add_argument("--spikes", type=int, default=7)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument(
        "--profile", metavar="FILE", help="run the operator under pyinstrument; its report goes here"
    )
    args = parser.parse_args(argv)

    localcluster = load_localcluster()
    work = Path(tempfile.mkdtemp(prefix="jobpool-bench-operator-"))
    external = os.environ.get("JOBPOOL_CLUSTER_DIR")
    if external:
        cluster = localcluster.LocalCluster.attach(Path(external), BIN)
    else:
        # a kwok node holds 110 pods: one per pool plus the spiky pool's 10
        nodes = max(3, math.ceil((args.pools + 20) / 100))
        cluster = localcluster.LocalCluster(
            root=work / "cluster", bin_dir=BIN, nodes=nodes, bind_to_parent=True
        ).start()
    redis_dir = work / "redis"
    redis_dir.mkdir()
    redis = RedisServer(redis_dir)
    redis.start()
    env = cluster.env()
    namespace = f"bench-{os.getpid()}"
    operator = None
    try:
        kubectl(env, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "charts/jobpool/crds"))
        kubectl(env, "wait", "--for=condition=Established", "crd/jobpools.jobpool.dev", "--timeout=60s")
        kubectl(env, "create", "namespace", namespace)
        metrics_port = free_port()
        profiler = (
            ["-m", "pyinstrument", "--renderer", "text", "--outfile", args.profile] if args.profile else []
        )
        operator = subprocess.Popen(
            [
                sys.executable,
                *profiler,
                "-m",
                "jobpool.cli",
                "operator",
                "--namespace",
                namespace,
                "--default-queue",
                redis.url,
                "--metrics-port",
                str(metrics_port),
                "--log-level",
                "WARNING",
            ],
            env={
                **env,
                "PYTHONPATH": os.pathsep.join(filter(None, (os.environ.get("PYTHONPATH"), str(ROOT)))),
            },
            stdout=subprocess.DEVNULL,
            stderr=open(work / "operator.log", "w"),
        )
        wait(lambda: _healthy(metrics_port), 60, "the operator's /healthz")
        time.sleep(2.0)  # lease + kopf watches established
        rss_idle = rss_mb(operator.pid)

        manifests = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [pool(f"pool-{i:04d}") for i in range(args.pools)],
        }
        readiness = ReadyWatch(env, namespace)
        readiness.start()
        started = time.monotonic()
        kubectl(env, "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifests))
        applied = time.monotonic()
        peak = rss_idle
        while readiness.count() < args.pools:
            peak = max(peak, rss_mb(operator.pid))
            if operator.poll() is not None:
                raise SystemExit(
                    f"bench: the operator exited ({operator.returncode}) with {readiness.count()}/"
                    f"{args.pools} pools Ready; see {work / 'operator.log'}"
                )
            if time.monotonic() - applied > 600:
                raise SystemExit(f"bench: only {readiness.count()}/{args.pools} pools Ready after 600 s")
            time.sleep(0.1)
        all_ready_s = time.monotonic() - applied
        readiness.process.terminate()
        rss_ready = rss_mb(operator.pid)
        print(
            f"{args.pools} pools Ready after {all_ready_s:.1f} s; operator RSS {rss_ready:.0f} MB", flush=True
        )

        # Idle: counters settle (written at most once a second), then nothing should be written.
        time.sleep(3.0)
        before = api_writes(env)
        commands = redis_commands(redis.url, args.idle_seconds)
        after = api_writes(env)
        writes = {
            key: after.get(key, 0) - before.get(key, 0)
            for key in after
            if after.get(key, 0) != before.get(key, 0)
        }
        round_trips = sum(commands.values())
        print(
            f"idle {args.idle_seconds:.0f} s: {sum(writes.values())} API writes {writes or ''}; {round_trips} Redis "
            f"commands {commands} = {round_trips / args.pools / args.idle_seconds:.2f} per pool per second",
            flush=True,
        )

        # Autoscaler reaction, with the 200 pools still being reconciled.
        kubectl(
            env,
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=yaml.safe_dump(
                pool(
                    "spiky",
                    concurrency=1,
                    autoscaling={
                        "enabled": True,
                        "minWorkers": 0,
                        "maxWorkers": 10,
                        "targetBacklogPerWorker": 1,
                        "scaleDownDelaySeconds": 0,
                    },
                )
            ),
        )
        wait(lambda: _deployment_exists(env, namespace, "spiky-workers"), 30, "the spiky pool's Deployment")
        watch = ReplicaWatch(env, namespace, "spiky-workers")
        watch.start()
        wait(lambda: watch.replicas() == 0, 30, "the spiky pool at zero")
        reactions = []
        for spike in range(args.spikes):
            seen = len(watch.changes)
            submitted = asyncio.run(_submit(redis.url, namespace, "spiky", 5))
            wait(lambda: len(watch.changes) > seen and watch.replicas() == 5, 30, f"spike {spike} scale-up")
            reactions.append(watch.changes[seen][0] - submitted)
            asyncio.run(_drain(redis.url, namespace, "spiky"))
            wait(lambda: watch.replicas() == 0, 30, f"spike {spike} scale-down")
        watch.process.terminate()
        peak = max(peak, rss_mb(operator.pid))

        figures = {
            "pools": args.pools,
            "apply_seconds": round(applied - started, 2),
            "all_ready_seconds_after_last_apply": round(all_ready_s, 2),
            "all_ready_seconds_after_first_apply": round(all_ready_s + applied - started, 2),
            "operator_rss_mb_idle": round(rss_idle, 1),
            "operator_rss_mb_all_ready": round(rss_ready, 1),
            "operator_rss_mb_peak": round(peak, 1),
            "operator_rss_ratio_to_empty_operator": round(rss_ready / rss_idle, 2),
            "operator_rss_mb_per_pool": round((rss_ready - rss_idle) / args.pools, 3),
            "idle_api_writes": sum(writes.values()),
            "idle_redis_commands_per_pool_per_second": round(round_trips / args.pools / args.idle_seconds, 3),
            "autoscaler_reaction_seconds_median": round(statistics.median(reactions), 3),
            "autoscaler_reaction_seconds_max": round(max(reactions), 3),
            "spikes": len(reactions),
        }
        print(
            f"{args.pools} JobPools Ready {figures['all_ready_seconds_after_last_apply']} s after the last "
            f"apply, {figures['all_ready_seconds_after_first_apply']} s after the first "
            f"(kubectl apply took {figures['apply_seconds']} s)"
        )
        print(
            f"operator RSS: {figures['operator_rss_mb_idle']} MB idle, {figures['operator_rss_mb_all_ready']} MB "
            f"with {args.pools} pools ({figures['operator_rss_ratio_to_empty_operator']} x the empty operator, "
            f"{figures['operator_rss_mb_per_pool']} MB per pool), peak {figures['operator_rss_mb_peak']} MB"
        )
        print(
            f"idle pools: {figures['idle_api_writes']} API writes, "
            f"{figures['idle_redis_commands_per_pool_per_second']} Redis round trips per pool per second"
        )
        print(
            f"autoscaler reaction (submit -> Deployment replicas patched): median "
            f"{figures['autoscaler_reaction_seconds_median']} s, max {figures['autoscaler_reaction_seconds_max']} s "
            f"over {len(reactions)} spikes"
        )
        print(json.dumps(figures))
        return 0
    finally:
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                operator.kill()
        if external:
            subprocess.run(
                [str(BIN / "kubectl"), "delete", "namespace", namespace, "--wait=false"],
                env=env,
                capture_output=True,
            )
        else:
            cluster.stop()
        redis.stop()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _deployment_exists(env, namespace: str, name: str) -> bool:
    return (
        subprocess.run(
            [str(BIN / "kubectl"), "get", "deployment", name, "-n", namespace], env=env, capture_output=True
        ).returncode
        == 0
    )


async def _submit(url: str, namespace: str, name: str, count: int) -> float:
    queue = open_queue(url, namespace, name)
    try:
        await queue.submit_many(list(range(count)))
        return time.monotonic()
    finally:
        await queue.close()


async def _drain(url: str, namespace: str, name: str) -> None:
    queue = open_queue(url, namespace, name)
    try:
        await queue.delete_all()
    finally:
        await queue.close()


if __name__ == "__main__":
    raise SystemExit(main())
