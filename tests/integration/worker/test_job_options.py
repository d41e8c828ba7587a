"""Per-job options (README "Per-job options"): a job's own timeout, max_attempts and backoff
override the pool's within the caps the pool sets, through real `jobpool worker` processes."""

from __future__ import annotations

import time

import jobpool
from jobpool.cli import main
from tests.helpers import wait_until

TASKS = "tests.integration.tasks"


def test_a_jobs_own_max_attempts_and_timeout_override_the_pools(
    redis_server, pool_name, spawn_worker, tmp_path
):
    spawn_worker(
        handler="tests.integration.handlers:sleepy",
        concurrency=3,
        max_attempts=5,
        backoff=0.05,
        timeout=0,
        env={"JOBPOOL_TEST_LOG": str(tmp_path / "log")},
    )
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit({"n": 1, "seconds": 30}, id="short", timeout=0.3, max_attempts=2)
        client.submit({"n": 2}, id="default")
        assert client.result("default", timeout=15).result == 2
        wait_until(lambda: client.status().dead_letter == 1, timeout=15, what="a dead letter")
        [dead] = client.dead_letters()
        assert (dead.id, dead.attempts, dead.error) == ("short", 2, "timed out after 0.3s")
        assert client.status().retried == 1


def test_the_pool_caps_a_jobs_options(redis_server, pool_name, spawn_worker):
    spawn_worker(
        handler="tests.integration.handlers:poison",
        max_attempts=1,
        max_job_attempts=3,
        backoff=0.01,
        max_backoff=0.05,
    )
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit_many(["a", "b"], ["capped", "asked"], options=jobpool.JobOptions(max_attempts=50))
        client.submit("c", id="pool-default")
        wait_until(lambda: client.status().dead_letter == 3, timeout=15, what="three dead letters")
        attempts = {dead.id: dead.attempts for dead in client.dead_letters()}
        assert attempts == {"capped": 3, "asked": 3, "pool-default": 1}


def test_a_jobs_own_backoff_and_the_cli_flags(redis_server, pool_name, spawn_worker, tmp_path, capsys):
    spawn_worker(handler=TASKS, backoff=60, max_backoff=60, env={"JOBPOOL_TEST_LOG": str(tmp_path / "log")})
    code = main(
        [
            "submit",
            "--queue",
            redis_server.url,
            "-n",
            "it",
            pool_name,
            "--task",
            "flaky",
            "--backoff",
            "0.05",
            "--max-attempts",
            "2",
            "--timeout",
            "10",
            "--payload",
            '"x"',
            "--id",
            "quick-retry",
        ]
    )
    assert (code, capsys.readouterr().out) == (0, "quick-retry\n")
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        started = time.monotonic()
        result = client.result("quick-retry", timeout=15)
        assert (result.result, result.attempts) == ({"flaky": "x"}, 2)
        assert time.monotonic() - started < 10  # not the pool's 60 s backoff


def test_options_survive_a_dead_letter_replay(redis_server, pool_name, queue):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit(1, id="j", task="resize", timeout=7, max_attempts=4, backoff=0.5)
        [job] = queue.fetch("c1", 1, 100)
        assert (job.task, job.options) == (
            "resize",
            jobpool.JobOptions(timeout=7, max_attempts=4, backoff=0.5),
        )
        queue.fail(job, "boom", max_attempts=1, backoff=0, max_backoff=0)
        client.replay(["j"])
        [again] = queue.fetch("c1", 1, 100)
        assert again.options == job.options


def test_invalid_options_are_refused_before_anything_is_sent(redis_server, pool_name, capsys):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        for bad in ({"timeout": 0}, {"max_attempts": 0}, {"backoff": -1}, {"timeout": "soon"}):
            try:
                client.submit(1, **bad)
            except jobpool.QueueError as exc:
                assert next(iter(bad)) in str(exc)
            else:
                raise AssertionError(f"{bad} was accepted")
        assert client.status().submitted == 0
    code = main(
        [
            "submit",
            "--queue",
            redis_server.url,
            "-n",
            "it",
            pool_name,
            "--max-attempts",
            "0",
            "--payload",
            "1",
        ]
    )
    out, err = capsys.readouterr()
    assert (code, out) == (2, "") and "--max-attempts: max_attempts must be an integer >= 1" in err


def test_the_web_pages_reader_shows_a_jobs_task_and_payload_in_every_state(redis_server, pool_name, queue):
    from jobpool.queue.browse import open_browse

    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit({"src": "a"}, id="retry", task="resize", timeout=7, backoff=60)
        client.submit({"src": "b"}, id="dies", task="crop.square")
        client.submit({"src": "c"}, id="waits", task="resize")
    jobs = {job.id: job for job in queue.fetch("c1", 2, 100)}
    queue.fail(jobs["retry"], "again", max_attempts=3, backoff=60, max_backoff=60)
    queue.fail(jobs["dies"], "boom", max_attempts=1, backoff=0, max_backoff=0)
    browse = open_browse(queue.queue)
    [delayed] = queue.loop.run_until_complete(browse.delayed()).jobs
    assert (delayed.id, delayed.task, delayed.payload, delayed.attempts) == (
        "retry",
        "resize",
        {"src": "a"},
        1,
    )
    [dead] = queue.loop.run_until_complete(browse.dead()).jobs
    assert (dead.id, dead.task) == ("dies", "crop.square")
    [waiting] = queue.loop.run_until_complete(browse.queued()).jobs
    assert (waiting.id, waiting.task) == ("waits", "resize")
