"""One job's state (README "Job state"): `jobpool job POOL ID` and `client.job(id)` show a job
waiting, scheduled, running (its worker and progress), retrying (its last error), succeeded
(its result) or dead, and an unknown id is an error that names it."""

from __future__ import annotations

import asyncio
import json
import time

import jobpool
from jobpool.cli import main
from tests.helpers import wait_until


def test_a_job_waiting_or_scheduled_shows_its_state_task_and_due_time(redis_server, pool_name):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit(1, id="now", task="resize")
        submitted = time.time()
        client.submit(2, id="later", task="resize", delay=3600)
        waiting, scheduled = client.job("now"), client.job("later")
        assert (waiting.id, waiting.state, waiting.task, waiting.attempts) == ("now", "waiting", "resize", 0)
        assert submitted - 5 <= waiting.enqueued_at <= time.time()
        assert (scheduled.state, scheduled.task, scheduled.attempts) == ("scheduled", "resize", 0)
        assert submitted + 3600 - 5 <= scheduled.due_at <= time.time() + 3600
        assert client.job("never-submitted") is None


def test_a_running_job_shows_its_worker_and_progress_then_its_result(redis_server, pool_name, spawn_worker):
    spawn_worker(handler="tests.integration.handlers:progress_then_wait")
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit(2, id="long")
        wait_until(
            lambda: client.job("long").progress == {"step": "resizing"},
            timeout=15,
            what="the running job's progress",
        )
        running = client.job("long")
        assert (running.state, running.attempts) == ("running", 1)
        assert running.worker
        assert client.result("long", timeout=15).result == "done"
        done = client.job("long")
        assert (done.state, done.result, done.attempts, done.progress) == ("succeeded", "done", 1, None)


def test_a_retrying_job_shows_its_last_error_and_a_dead_one_its_error(redis_server, pool_name, spawn_worker):
    spawn_worker(handler="tests.integration.handlers:sleepy_or_fail", backoff=60, max_attempts=3)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit("bad", id="retry")
        client.submit("bad", id="dies", max_attempts=1)
        wait_until(lambda: client.job("retry").state == "retrying", timeout=15, what="a retry")
        retrying = client.job("retry")
        assert retrying.attempts == 1
        assert "cannot handle 'bad'" in retrying.error
        assert retrying.due_at > time.time() + 30
        wait_until(lambda: client.job("dies").state == "dead", timeout=15, what="a dead letter")
        dead = client.job("dies")
        assert dead.attempts == 1 and "cannot handle 'bad'" in dead.error and dead.finished_at


def test_jobpool_job_prints_the_state_and_names_an_unknown_id(redis_server, pool_name, capsys):
    flags = ["--queue", redis_server.url, "-n", "it"]
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit({"x": 1}, id="j1", task="resize")
    assert main(["job", pool_name, "j1", *flags, "-o", "json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {key: record[key] for key in ("id", "state", "task", "attempts")} == {
        "id": "j1",
        "state": "waiting",
        "task": "resize",
        "attempts": 0,
    }
    assert main(["job", pool_name, "j1", *flags, "-o", "yaml"]) == 0
    assert 'state: "waiting"' in capsys.readouterr().out
    assert main(["job", pool_name, "j1", *flags]) == 0
    assert "waiting" in capsys.readouterr().out
    assert main(["job", pool_name, "nope", *flags]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err


def test_the_async_client_reads_a_jobs_state(redis_server, pool_name):
    async def scenario():
        async with jobpool.AsyncClient(redis_server.url, "it", pool_name) as client:
            await client.submit(1, id="a1")
            return await client.job("a1")

    assert asyncio.run(scenario()).state == "waiting"
