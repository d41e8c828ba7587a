#!/usr/bin/env python3
"""Plays the containers of a pool's worker pods with local `jobpool worker` processes.

kwok marks the fake pods Running and Ready but runs no code, so for every Ready worker pod
this starts one local worker with the pod's own JOBPOOL_* environment (worker id = pod
name, from the downward API) and sends it SIGTERM (drain) once the pod is terminating or
gone, as a kubelet would. SIGTERM or SIGINT stops every worker it started, then exits.

    demo_cluster_pods.py --namespace NS --pool POOL --log-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_SECONDS = 0.3
STOP_GRACE_SECONDS = 20


def pod_is_ready(pod: dict) -> bool:
    if pod["metadata"].get("deletionTimestamp") or pod.get("status", {}).get("phase") != "Running":
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def container_env(pod: dict) -> dict[str, str]:
    """The worker container's variables: plain values, and the pod name for metadata.name references."""
    env: dict[str, str] = {}
    for var in pod["spec"]["containers"][0].get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = pod["metadata"]["name"]
    # Every pod would serve metrics on the same port; local processes share one network namespace.
    env["JOBPOOL_METRICS_PORT"] = "0"
    return env


def list_pods(namespace: str, pool: str) -> list[dict] | None:
    result = subprocess.run(
        ["kubectl", "get", "pods", "-n", namespace, "-l", f"jobpool.dev/pool={pool}", "-o", "json"],
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout)["items"] if result.returncode == 0 else None


def say(message: str) -> None:
    # Clears a progress line the demo may be drawing on the same terminal.
    print(("\r\033[K" if sys.stdout.isatty() else "") + f"  [pods] {message}", flush=True)


class Stop(Exception):
    pass


def _stop(signum, frame):
    raise Stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--log-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    jobpool = str(Path(sys.executable).with_name("jobpool"))
    handlers = str(
        Path(__file__).resolve().parents[1] / "examples" / "01-minimal"
    )  # the example image's code
    workers: dict[str, subprocess.Popen] = {}
    draining: set[str] = set()
    try:
        while True:
            pods = list_pods(args.namespace, args.pool)
            if pods is not None:
                ready = {p["metadata"]["name"]: p for p in pods if pod_is_ready(p)}
                for name, pod in ready.items():
                    if name not in workers:
                        env = {
                            **os.environ,
                            **container_env(pod),
                            "PYTHONUNBUFFERED": "1",
                            "PYTHONPATH": os.pathsep.join(
                                filter(None, [handlers, os.environ.get("PYTHONPATH")])
                            ),
                        }
                        log = open(args.log_dir / f"worker-{name}.log", "ab")
                        workers[name] = subprocess.Popen(
                            [jobpool, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
                        )
                        log.close()
                        say(f"{name} is Ready: started its local `jobpool worker` (pid {workers[name].pid})")
                for name, process in list(workers.items()):
                    if name not in ready and process.poll() is None and name not in draining:
                        process.send_signal(signal.SIGTERM)
                        draining.add(name)
                        say(f"{name} is terminating: SIGTERM to its worker, which drains in-flight jobs")
                    elif process.poll() is not None:
                        say(f"{name}: worker exited with status {process.returncode}")
                        del workers[name]
                        draining.discard(name)
            # The names of the pods whose worker still runs, for the demo to wait on.
            (args.log_dir / "local-workers").write_text("".join(f"{name}\n" for name in workers))
            time.sleep(POLL_SECONDS)
    except Stop:
        pass
    finally:
        # A second signal (Ctrl-C reaches the whole group, then the demo's teardown sends SIGTERM)
        # must not cut this short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for process in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in workers.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
