"""Jobs submitted to run later (README "Run at / delay"): `delay`, `run_at`, `--delay`, `--at`;
scheduled jobs are counted apart from delayed retries, and only the ones due within the
scale-up horizon are backlog."""

from __future__ import annotations

import datetime
import time

import pytest

import jobpool
from jobpool.api import AutoscalingSpec
from jobpool.cli import main
from jobpool.controller.autoscaler import decide_replicas


def test_a_delayed_job_runs_no_sooner_than_its_delay(redis_server, pool_name, spawn_worker):
    spawn_worker(handler="tests.integration.handlers:started_at")
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        submitted = time.time()
        later = client.submit(None, delay=1.5)
        at = client.submit(None, run_at=datetime.datetime.fromtimestamp(submitted + 1, datetime.UTC))
        now = client.submit(None)
        assert client.result(now, timeout=15).result < submitted + 1
        assert client.result(at, timeout=15).result >= submitted + 1 - 0.05
        assert client.result(later, timeout=15).result >= submitted + 1.5 - 0.05


def test_scheduled_jobs_are_counted_apart_and_only_due_ones_are_backlog(
    redis_server, pool_name, queue, capsys
):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit_many(list(range(1000)), delay=3600)  # tomorrow's work: +1 h
        client.submit(1, id="soon", delay=30)  # due within the horizon
        [job] = queue.fetch("c1", 1, 100) or [None]
        assert job is None  # nothing is due yet
        stats = client.status()
        assert (stats.scheduled, stats.waiting, stats.delayed, stats.backlog) == (1001, 0, 0, 1)
        assert stats.as_status()["scheduled"] == 1001
        client.submit(2, id="retry")
        [job] = queue.fetch("c1", 1, 100)
        queue.fail(job, "again", max_attempts=3, backoff=3600, max_backoff=3600)
        stats = client.status()
        assert (stats.scheduled, stats.delayed, stats.backlog) == (1001, 1, 1)
    idle = decide_replicas(
        backlog=stats.backlog - 1,
        in_flight=0,
        current=0,
        policy=AutoscalingSpec(enabled=True, min_workers=0, max_workers=5),
        concurrency=1,
        lower_demand_since=None,
        now=0.0,
    )
    assert idle.replicas == 0  # 1,000 jobs due in an hour keep no pod running
    assert main(["status", "--queue", redis_server.url, "-n", "it", pool_name]) == 0
    assert "scheduled 1001" in capsys.readouterr().out


def test_a_scheduled_id_is_known_and_does_not_take_the_room_of_waiting_jobs(redis_server, pool_name, queue):
    queue.configure(max_length=1)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        assert client.submit_many([1, 2, 3], ["a", "b", "c"], delay=600, wait=False) == ["a", "b", "c"]
        assert client.submit(1, id="a") == "a"  # known: not enqueued again
        client.submit(4, id="now", wait=False)  # the one waiting job's room
        with pytest.raises(jobpool.QueueFull):
            client.submit(5, wait=False)
        assert (client.status().scheduled, client.status().waiting, client.status().submitted) == (3, 1, 4)


def test_the_cli_takes_a_delay_with_a_unit_and_a_time_with_a_zone(redis_server, pool_name, queue, capsys):
    base = ["submit", "--queue", redis_server.url, "-n", "it", pool_name, "--payload", "1"]
    assert main([*base, "--delay", "5m"]) == 0
    assert main([*base, "--at", "2099-01-01T00:00:00Z"]) == 0
    assert queue.stats().scheduled == 2
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*base, "--at", "2099-01-01T00:00:00"])
    assert "has no time zone" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--delay", "soon"])
    assert "is no duration" in capsys.readouterr().err
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        with pytest.raises(jobpool.QueueError, match="no time zone"):
            client.submit(1, run_at=datetime.datetime(2099, 1, 1))
        with pytest.raises(jobpool.QueueError, match="not both"):
            client.submit(1, delay=1, run_at=time.time() + 1)
