"""Cancel (README "Cancel"): `jobpool cancel POOL --id ID...` and `client.cancel(id)` withdraw a
waiting, scheduled or retrying job at once (outcome cancelled, counted in status and
jobpool_jobs_total), and say so, changing nothing, for a job that has finished."""

from __future__ import annotations

import json
import sys
import time

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import jobpool
from jobpool.cli import main
from jobpool.controller.metrics import OperatorMetrics
from tests.helpers import wait_until


def jobs_total(stats, pool: str) -> dict[str, float]:
    metrics = OperatorMetrics()
    metrics.observe_pool("it", pool, stats, 0, 0)
    families = text_string_to_metric_families(generate_latest(metrics.registry).decode())
    return {
        sample.labels["outcome"]: sample.value
        for family in families
        if family.name == "jobpool_jobs_total"
        for sample in family.samples
    }


def test_a_waiting_a_scheduled_and_a_retrying_job_are_withdrawn_and_never_run(
    redis_server, pool_name, queue, spawn_worker
):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit("bad", id="retrying")
        [job] = queue.fetch("a-worker", 1, 0)
        assert queue.fail(job, "boom", max_attempts=3, backoff=60, max_backoff=60) == "retried"
        client.submit(1, id="waiting")
        client.submit(2, id="scheduled", delay=3600)
        assert [client.cancel(i) for i in ("waiting", "scheduled", "retrying")] == ["cancelled"] * 3
        stats = client.status()
        assert (stats.waiting, stats.scheduled, stats.delayed, stats.cancelled) == (0, 0, 0, 3)
        assert stats.as_status()["cancelled"] == 3
        assert jobs_total(stats, pool_name)["cancelled"] == 3
        cancelled = client.job("waiting")
        assert cancelled.state == "cancelled" and cancelled.finished_at
        assert client.job("retrying").error is None
        spawn_worker(handler="tests.integration.handlers:echo")
        assert client.result(client.submit(3, id="after"), timeout=15).result == {"echo": 3}
        assert [client.result(i) for i in ("waiting", "scheduled", "retrying")] == [None] * 3


def test_cancelling_a_finished_job_says_so_and_changes_nothing(redis_server, pool_name, spawn_worker):
    spawn_worker(handler="tests.integration.handlers:echo")
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        assert client.result(client.submit(1, id="done"), timeout=15).result == {"echo": 1}
        client.submit(2, id="gone", delay=3600)
        assert client.cancel("gone") == "cancelled"
        assert (client.cancel("done"), client.cancel("gone"), client.cancel("nope")) == (
            "succeeded",
            "was cancelled",
            "unknown",
        )
        assert client.result("done").result == {"echo": 1}
        assert (client.status().succeeded, client.status().cancelled) == (1, 1)


def test_jobpool_cancel_reports_each_job_and_names_an_unknown_one(redis_server, pool_name, capsys):
    flags = ["--queue", redis_server.url, "-n", "it"]
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit(1, id="c1")
        client.submit(2, id="c2", delay=60)
    assert main(["cancel", pool_name, "--id", "c1", "--id", "c2", *flags, "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"c1": "cancelled", "c2": "cancelled"}
    assert main(["cancel", pool_name, "--id", "c1", "--id", "missing", *flags]) == 1
    out, err = capsys.readouterr()
    assert out == "c1: already cancelled, nothing changed\nmissing: unknown\n"
    assert len(err.strip().splitlines()) == 1 and "missing" in err


def test_a_running_async_job_is_cancelled_at_its_workers_heartbeat_and_never_retried(
    redis_server, pool_name, spawn_worker
):
    spawn_worker(
        handler="tests.integration.handlers:progress_then_wait", heartbeat_interval=0.2, max_attempts=3
    )
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit(60, id="long")
        wait_until(lambda: client.job("long").state == "running", timeout=15, what="the job running")
        assert client.cancel("long") == "cancelling"
        wait_until(lambda: client.job("long").state == "cancelled", timeout=10, what="the job cancelled")
        stats = client.status()
        assert (stats.cancelled, stats.retried, stats.in_flight, stats.delayed) == (1, 0, 0, 0)
        assert stats.progress == {}
        assert (client.result("long"), client.cancel("long")) == (None, "was cancelled")
        assert client.result(client.submit(0, id="next"), timeout=15).result == "done"


def test_a_sync_handler_sees_its_job_cancelled_and_its_slot_is_freed(redis_server, pool_name, spawn_worker):
    spawn_worker(
        handler="tests.integration.handlers:sync_until_cancelled", heartbeat_interval=0.2, concurrency=1
    )
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit(60, id="sync")
        wait_until(lambda: client.job("sync").state == "running", timeout=15, what="the job running")
        assert client.cancel("sync") == "cancelling"
        wait_until(lambda: client.job("sync").state == "cancelled", timeout=10, what="the job cancelled")
        # the one slot is free again once the handler saw the flag and returned
        assert client.result(client.submit(0.01, id="next"), timeout=15).result == "ran to its end"
        assert client.status().retried == 0


def test_a_running_command_gets_sigterm_when_its_job_is_cancelled(
    redis_server, pool_name, spawn_worker, tmp_path
):
    marker = tmp_path / "signalled"
    program = (
        "import json,signal,sys,time; "
        "signal.signal(signal.SIGTERM, lambda *_: (open(sys.argv[1], 'w').write('SIGTERM'), sys.exit(143))); "
        "open(sys.argv[1], 'w').write('ready'); json.load(sys.stdin); time.sleep(60)"
    )
    spawn_worker(command=[sys.executable, "-c", program, str(marker)], heartbeat_interval=0.2)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit(1, id="cmd")
        wait_until(
            lambda: marker.exists() and marker.read_text() == "ready", timeout=15, what="the command running"
        )
        assert client.cancel("cmd") == "cancelling"
        wait_until(lambda: client.job("cmd").state == "cancelled", timeout=10, what="the job cancelled")
        assert marker.read_text() == "SIGTERM"
        assert (client.status().cancelled, client.status().retried) == (1, 0)


def test_cancelling_thousands_of_waiting_jobs_walks_the_stream_once(redis_server, pool_name, queue):
    # A batch's cancel names every job: each id must not cost a walk of the stream of its own.
    total = 5000
    ids = queue.submit_many(list(range(total)), [f"b-{i}" for i in range(total)])
    started = time.monotonic()
    outcomes = queue.cancel(ids)
    took = time.monotonic() - started
    assert set(outcomes.values()) == {"cancelled"} and len(outcomes) == total
    stats = queue.stats()
    assert (stats.waiting, stats.cancelled) == (0, total)
    assert took < 2.0, f"cancelling {total} waiting jobs took {took:.1f} s"
