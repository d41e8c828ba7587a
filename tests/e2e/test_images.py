"""The project's images in real containers: read-only root filesystem, any non-root uid, and
the worker as PID 1 draining on `docker stop` (SIGTERM), against the session's redis-server."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
import redis

from jobpool import Client
from tests.helpers import free_port, wait_until

pytestmark = pytest.mark.images

NAMESPACE = "images"


@pytest.fixture
def containers(docker_images):
    """Starts detached containers on the host network; removes them after the test."""
    started: list[str] = []

    def run(
        image: str,
        *args: str,
        user: str = "65532",
        env: dict[str, str] | None = None,
        tmpfs: str | None = None,
    ) -> str:
        flags = ["--detach", "--read-only", "--user", user, "--network", "host"]
        if tmpfs:
            flags += ["--tmpfs", f"{tmpfs}:uid={user}"]
        for name, value in (env or {}).items():
            flags += ["--env", f"{name}={value}"]
        container = docker_images.docker("run", *flags, docker_images.image(image), *args).stdout.strip()
        started.append(container)
        return container

    yield run
    for container in started:
        docker_images.docker("rm", "--force", container, check=False)


def start_worker(containers, redis_server, pool: str, metrics_port: int, *flags: str) -> str:
    """A worker from the example's image (FROM jobpool-worker), configured as the operator does."""
    return containers(
        "examples",
        "--handler",
        "tasks:slow",
        *flags,
        env={
            "JOBPOOL_QUEUE_URL": redis_server.url,
            "JOBPOOL_NAMESPACE": NAMESPACE,
            "JOBPOOL_POOL": pool,
            "JOBPOOL_METRICS_PORT": str(metrics_port),
        },
    )


def state(docker_images, container: str) -> dict:
    return json.loads(docker_images.docker("inspect", "--format", "{{json .State}}", container).stdout)


def health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return json.loads(response.read())
    except OSError:
        return None


def test_worker_image_runs_jobs_as_any_uid_on_a_read_only_root(
    docker_images, containers, redis_server, pool_name
):
    port = free_port()
    worker = start_worker(containers, redis_server, pool_name, port, "--concurrency", "4")
    with Client(redis_server.url, NAMESPACE, pool_name) as client:
        ids = client.submit_many([0] * 40)
        results = {id: client.result(id, timeout=60) for id in ids}
    assert all(result is not None and result.result == 0 for result in results.values())
    assert health(port)["slots"] == 4
    assert state(docker_images, worker)["Running"]


def test_docker_stop_drains_the_job_in_flight_and_exits_0(docker_images, containers, redis_server, pool_name):
    port = free_port()
    worker = start_worker(containers, redis_server, pool_name, port, "--drain-seconds", "60")
    with Client(redis_server.url, NAMESPACE, pool_name) as client:
        wait_until(lambda: health(port), timeout=30, what="the worker's /healthz")
        job = client.submit(3)
        wait_until(lambda: client.status().in_flight == 1, timeout=30, what="the job in flight")
        started = time.monotonic()
        docker_images.docker("stop", "--time", "20", worker, timeout=60)
        stopped_after = time.monotonic() - started
        result = client.result(job, timeout=0.1)
    assert state(docker_images, worker)["ExitCode"] == 0
    assert result is not None and result.result == 3 and result.attempts == 1
    assert stopped_after < 10, f"docker stop took {stopped_after:.1f}s for a 3 s job"


def test_idle_worker_exits_0_at_once_on_docker_stop(docker_images, containers, redis_server, pool_name):
    port = free_port()
    worker = start_worker(containers, redis_server, pool_name, port)
    wait_until(lambda: health(port), timeout=30, what="the worker's /healthz")
    started = time.monotonic()
    docker_images.docker("stop", "--time", "60", worker, timeout=90)
    assert time.monotonic() - started < 5
    assert state(docker_images, worker)["ExitCode"] == 0


def test_operator_image_starts_its_command_line_read_only(docker_images):
    result = docker_images.docker(
        "run",
        "--rm",
        "--read-only",
        "--user",
        "65532",
        "--network",
        "none",
        docker_images.image("operator"),
        "operator",
        "--help",
    )
    assert "--all-namespaces" in result.stdout


def test_redis_image_serves_with_aof_on_its_volume(docker_images, containers):
    port = free_port()
    containers(
        "redis",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--appendonly",
        "yes",
        "--dir",
        "/data",
        user="999",
        tmpfs="/data",
    )
    server = redis.Redis(port=port)
    wait_until(lambda: _pings(server), timeout=30, what="jobpool-redis to answer PING")
    server.set("key", "value")
    assert server.config_get("appendonly") == {"appendonly": "yes"}
    assert server.get("key") == b"value"


def _pings(server: redis.Redis) -> bool:
    try:
        return server.ping()
    except redis.exceptions.ConnectionError:
        return False
