"""Priorities and fairness keys through real `jobpool worker` processes (README "Priorities and
fairness"): `--priority` / `priority=`, `--fairness-key` / `fairness_key=`, the per-level waiting
counts in `jobpool status` and jobpool_queue_waiting_priority."""

from __future__ import annotations

import json
import time

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import jobpool
from jobpool.cli import main
from jobpool.controller.metrics import OperatorMetrics
from tests.helpers import wait_until
from tests.integration.handlers import events

STARTED_AT = "tests.integration.handlers:started_at"


def start_order(client, ids: list[str]) -> list[str]:
    """The ids in the order their jobs started (each job's result is its start time)."""
    started = {job_id: client.result(job_id, timeout=60).result for job_id in ids}
    return sorted(ids, key=started.__getitem__)


def test_level_9_jobs_all_run_before_the_level_0_jobs_that_waited_before_them(
    redis_server, pool_name, spawn_worker
):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        low = client.submit_many(list(range(200)), [f"low-{n}" for n in range(200)])
        high = client.submit_many(list(range(20)), [f"high-{n}" for n in range(20)], priority=9)
        spawn_worker(handler=STARTED_AT, concurrency=1)
        order = start_order(client, low + high)
    assert set(order[:20]) == set(high)
    assert order[20:] == low


def test_a_customer_with_10_jobs_is_not_starved_by_one_with_1000(redis_server, pool_name, spawn_worker):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        a = client.submit_many(
            list(range(1000)), [f"a-{n}" for n in range(1000)], priority=2, fairness_key="customer-a"
        )
        b = [client.submit(n, id=f"b-{n}", priority=2, fairness_key="customer-b") for n in range(10)]
        spawn_worker(handler=STARTED_AT, concurrency=1)
        order = start_order(client, a[:30] + b)
    assert set(b) <= set(order[:25])


def test_the_cli_submits_with_a_priority_and_shows_it_in_job_and_status(redis_server, pool_name, capsys):
    flags = ["--queue", redis_server.url, "-n", "it"]
    assert (
        main(
            [
                "submit",
                *flags,
                pool_name,
                "--payload",
                "1",
                "--id",
                "p",
                "--priority",
                "7",
                "--fairness-key",
                "team.a",
            ]
        )
        == 0
    )
    assert main(["submit", *flags, pool_name, "--payload", "2"]) == 0
    capsys.readouterr()
    assert main(["job", *flags, pool_name, "p", "-o", "json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["state"], record["priority"], record["fairnessKey"]) == ("waiting", 7, "team.a")
    assert main(["status", *flags, pool_name]) == 0
    assert "waiting by priority  7: 1  0: 1" in capsys.readouterr().out
    assert main(["status", *flags, pool_name, "-o", "json"]) == 0
    queue = json.loads(capsys.readouterr().out)
    assert queue["waitingByPriority"] == [{"priority": 7, "waiting": 1}, {"priority": 0, "waiting": 1}]
    assert main(["submit", *flags, pool_name, "--payload", "3", "--priority", "10"]) == 2
    assert "--priority: priority must be an integer from 0 to 9" in capsys.readouterr().err
    assert main(["submit", *flags, pool_name, "--payload", "3", "--fairness-key", "a b"]) == 2
    assert "--fairness-key: fairness_key 'a b' is not a fairness key" in capsys.readouterr().err


def test_the_waiting_jobs_by_level_are_a_gauge_whose_emptied_levels_go(redis_server, pool_name, spawn_worker):
    metrics = OperatorMetrics()

    def gauge() -> dict[str, float]:
        families = text_string_to_metric_families(generate_latest(metrics.registry).decode())
        return {
            sample.labels["priority"]: sample.value
            for family in families
            if family.name == "jobpool_queue_waiting_priority"
            for sample in family.samples
        }

    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit_many([1, 2, 3], priority=9)
        client.submit_many([1] * 10)
        metrics.observe_pool("it", pool_name, client.status(), 0, 0)
        assert gauge() == {"9": 3, "0": 10}
        spawn_worker(handler="tests.integration.handlers:noop")
        wait_until(lambda: client.status().succeeded == 13, timeout=30)
        metrics.observe_pool("it", pool_name, client.status(), 0, 0)
        assert gauge() == {}


def test_level_9_jobs_submitted_while_thousands_wait_all_finish_and_each_runs_once(
    redis_server, pool_name, spawn_worker, tmp_path
):
    """Each level-9 job is delivered past unread level-0 entries (fetch.lua's express entries):
    the reads that reach them later, fetches and the workers' blocking reads, while the first
    ones still run, must skip them."""
    log = tmp_path / "runs.log"
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit_many([{"n": n} for n in range(1500)])
        for _ in range(2):
            spawn_worker(
                handler="tests.integration.handlers:sleepy", concurrency=4, env={"JOBPOOL_TEST_LOG": str(log)}
            )
        for n in range(1500, 1520):  # the first four still run when the level-0 jobs are done
            client.submit({"n": n, "seconds": 4 if n < 1504 else 0}, priority=9)
        wait_until(lambda: client.status().succeeded == 1520, timeout=120, what="1,520 jobs to succeed")
        stats = client.status()
        assert (stats.duplicates, stats.waiting, stats.in_flight) == (0, 0, 0)
    starts = [n for kind, n, _ in events(log) if kind == "start"]
    assert sorted(starts) == list(range(1520))


def test_a_job_with_a_priority_wakes_an_idle_worker_at_once(redis_server, pool_name, spawn_worker):
    """An idle worker blocks on the stream; a job waiting outside it comes with a wake entry."""
    spawn_worker(handler=STARTED_AT, concurrency=2)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        wait_until(lambda: client.status().workers, timeout=30, what="the worker to register")
        delays = []
        for n in range(5):
            time.sleep(0.3)  # the worker's fetch found nothing: it blocks again
            submitted = time.time()
            job_id = client.submit(n, priority=5, fairness_key="tenant")
            delays.append(client.result(job_id, timeout=10).result - submitted)
        stats = client.status()
        assert (stats.waiting, stats.in_flight) == (0, 0)
    assert sorted(delays)[2] < 0.25, delays  # the worker blocks for 1 s: it was woken
