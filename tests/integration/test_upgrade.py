"""A rolling update from the release before the Functions library (its Lua ran by EVALSHA) to
this one: a worker of each release and a producer of each share one pool on one Redis user, and
the old worker drains into the new one. The data in Redis (keys, entry fields) is unchanged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import ROOT, wait_until
from tests.integration.handlers import events

# The last commit whose queue ran scripts (operator/jobpool/queue/scripts.py) by EVALSHA.
PREVIOUS_RELEASE = "852ccab"
SLEEPY = "tests.integration.handlers:sleepy"


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory):
    """The previous release's package, from this repository's history."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE, "operator"], capture_output=True
    )
    if archive.returncode != 0:  # a shallow clone
        pytest.skip(f"commit {PREVIOUS_RELEASE} is not in this clone: {archive.stderr.decode()[:200]}")
    target = tmp_path_factory.mktemp("previous-release")
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / "operator"


def test_a_worker_and_a_producer_of_each_release_share_a_pool_through_a_rolling_update(
    previous_release, redis_server, pool_name, queue, spawn_worker, tmp_path
):
    log = tmp_path / "jobs.log"
    old_path = {"PYTHONPATH": os.pathsep.join([str(previous_release), str(ROOT)])}
    options = dict(
        handler=SLEEPY,
        concurrency=4,
        max_attempts=2,
        backoff=0.05,
        max_backoff=0.1,
        drain_seconds=0.5,
        env={"JOBPOOL_TEST_LOG": str(log)},
    )
    old = spawn_worker(**{**options, "env": {**options["env"], **old_path}})
    new = spawn_worker(**options)
    # a producer of each release: the old one's CLI, this one's SDK
    submitted = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobpool.cli",
            "submit",
            pool_name,
            "--queue",
            redis_server.url,
            "--namespace",
            "it",
            *(arg for n in range(100) for arg in ("--payload", f'{{"n": {n}, "seconds": 0.02}}')),
        ],
        cwd=ROOT,
        env={**os.environ, **old_path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    old_ids = submitted.stdout.split()
    new_ids = queue.submit_many([{"n": n, "seconds": 0.02} for n in range(100, 200)] + [{"broken": True}])
    assert "jobpool/queue/scripts.py" not in str(ROOT / "operator")  # the old one is really old
    assert (previous_release / "jobpool/queue/scripts.py").exists()
    for job_id in old_ids + new_ids[:100]:
        assert queue.result(job_id, timeout=30) is not None
    ran_by = {pid for kind, _, pid in events(log) if kind == "end"}
    assert {old.pid, new.pid} <= ran_by, "both releases ran jobs of the pool"
    wait_until(lambda: queue.stats().dead_letter == 1, what="the broken job dead-lettered")
    # the old worker is replaced: it drains, and a long job it held goes to the new worker
    [long_id] = queue.submit_many([{"n": 999, "seconds": 1.5}])
    wait_until(
        lambda: any(kind == "start" and n == 999 for kind, n, _ in events(log)), what="the long job to start"
    )
    holder = next(pid for kind, n, pid in events(log) if kind == "start" and n == 999)
    (old if holder == old.pid else new).send(signal.SIGTERM)
    assert queue.result(long_id, timeout=30) is not None
    assert queue.replay() == 1
    stats = wait_until(
        lambda: (s := queue.stats()).dead_lettered == 1 and s.backlog == 0 and s, what="the pool idle"
    )
    assert stats.succeeded == 201 and stats.duplicates == 0
    for worker in (old, new):
        worker.send(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
