"""Priorities and fairness keys at the queue (README "Priorities and fairness"): a higher level is
served first, keys of one level share the slots round-robin (the stream's own jobs are one of
level 0's), retries and scheduled jobs keep their level, and a job delivered past unread stream
entries is never delivered to a second live worker."""

from __future__ import annotations

import collections

import pytest
import redis

import jobpool
from jobpool.queue import JobOptions, QueueError


def served(queue, consumer: str, count: int, slots: int = 1) -> list:
    """Fetch and ack `count` jobs, `slots` at a time -> the jobs in the order they came."""
    order = []
    while len(order) < count:
        jobs = queue.fetch(consumer, slots, 0)
        if not jobs:
            break
        queue.ack_many([(job, None) for job in jobs])
        order += jobs
    return order


def test_a_higher_level_is_served_first_and_level_0_keeps_its_order(redis_server, pool_name, queue):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit_many(list(range(20)), [f"low-{n}" for n in range(20)])
        client.submit_many(list(range(5)), [f"mid-{n}" for n in range(5)], priority=5)
        client.submit_many(list(range(5)), [f"high-{n}" for n in range(5)], priority=9)
        stats = client.status()
        assert stats.waiting == 30
        assert stats.waiting_by_priority == {"9": 5, "5": 5, "0": 20}
        assert stats.as_status()["waitingByPriority"] == [
            {"priority": 9, "waiting": 5},
            {"priority": 5, "waiting": 5},
            {"priority": 0, "waiting": 20},
        ]
    order = [job.id for job in served(queue, "c1", 30, slots=3)]
    assert order == [f"high-{n}" for n in range(5)] + [f"mid-{n}" for n in range(5)] + [
        f"low-{n}" for n in range(20)
    ]


def test_keys_of_one_level_share_the_slots_round_robin(redis_server, pool_name, queue):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit_many(
            list(range(1000)), [f"a-{n}" for n in range(1000)], priority=3, fairness_key="customer-a"
        )
        client.submit_many(
            list(range(10)), [f"b-{n}" for n in range(10)], priority=3, fairness_key="customer-b"
        )
    first = [job.id for job in served(queue, "c1", 20)]
    assert sorted(job for job in first if job.startswith("b-")) == sorted(f"b-{n}" for n in range(10))
    assert [job for job in first if job.startswith("a-")] == [f"a-{n}" for n in range(10)]


def test_the_streams_own_jobs_take_one_turn_among_the_keys_of_level_0(redis_server, pool_name, queue):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit_many(list(range(100)), [f"plain-{n}" for n in range(100)])
        client.submit_many(list(range(5)), [f"keyed-{n}" for n in range(5)], fairness_key="t1")
        assert client.status().waiting_by_priority == {"0": 105}
    first = [job.id for job in served(queue, "c1", 10)]
    assert sorted(j for j in first if j.startswith("keyed-")) == [f"keyed-{n}" for n in range(5)]
    assert [j for j in first if j.startswith("plain-")] == [f"plain-{n}" for n in range(5)]
    rest = served(queue, "c1", 200, slots=7)
    assert len(rest) == 95 and len(set(first) | {job.id for job in rest}) == 105


def test_a_retry_and_a_scheduled_job_come_back_to_their_level_and_key(redis_server, pool_name, queue):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit("x", id="retried", priority=7, fairness_key="k")
        [job] = queue.fetch("c1", 1, 0)
        assert (job.id, job.options.priority, job.options.fairness_key) == ("retried", 7, "k")
        assert queue.fail(job, "boom", max_attempts=3, backoff=0, max_backoff=0) == "retried"
        client.submit("y", id="scheduled", priority=7, delay=0.2)
        client.submit_many(list(range(10)), [f"low-{n}" for n in range(10)])
        import time

        time.sleep(0.3)
        order = [job.id for job in served(queue, "c1", 12)]
        assert sorted(order[:2]) == ["retried", "scheduled"]
        assert client.job("retried").state == "succeeded"


def test_a_job_waiting_outside_the_stream_shows_its_level_and_is_cancelled(redis_server, pool_name, queue):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit_many([1, 2], ["p1", "p2"], priority=4, fairness_key="tenant.a")
        state = client.job("p1")
        assert (state.state, state.priority, state.fairness_key) == ("waiting", 4, "tenant.a")
        assert state.as_record()["priority"] == 4 and state.as_record()["fairnessKey"] == "tenant.a"
        assert client.cancel("p1") == "cancelled"
        assert client.job("p1").state == "cancelled"
        assert client.status().waiting_by_priority == {"4": 1}
        assert client.cancel("p2") == "cancelled"
        stats = client.status()
        assert (stats.waiting, stats.waiting_by_priority, stats.cancelled) == (0, {}, 2)
        assert queue.fetch("c1", 5, 0) == []
        client.submit(3, id="p3", priority=4, fairness_key="tenant.a")  # the level starts over
        [job] = queue.fetch("c1", 5, 0)
        assert job.id == "p3" and client.job("p3").state == "running"
        assert client.job("p3").priority == 4


@pytest.mark.parametrize(
    "options, problem",
    [
        (dict(priority=10), "priority must be an integer from 0 to 9"),
        (dict(priority=-1), "priority must be an integer from 0 to 9"),
        (dict(priority="9"), "priority must be an integer from 0 to 9"),
        (dict(fairness_key="a:b"), "fairness_key 'a:b' is not a fairness key"),
        (dict(fairness_key=""), "fairness_key '' is not a fairness key"),
        (dict(fairness_key="x" * 65), "is not a fairness key"),
    ],
)
def test_a_bad_priority_or_fairness_key_is_refused_naming_it(redis_server, pool_name, options, problem):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        with pytest.raises(QueueError, match=problem):
            client.submit(1, **options)
        with pytest.raises(QueueError, match=problem):
            client.submit_many([1], options=JobOptions(**options))


def test_a_job_delivered_past_unread_entries_is_never_delivered_twice(redis_server, pool_name, queue):
    """Level-9 jobs are delivered while level-0 entries wait unread in the stream: every later read,
    a fetch's or a worker's blocking read, skips them, and each job is delivered once."""
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit_many(list(range(3000)), [f"low-{n}" for n in range(3000)])
        delivered = collections.Counter()
        held = []
        for n in range(50):
            client.submit(n, id=f"high-{n}", priority=9)
            [job] = queue.fetch(f"c{n % 3}", 1, 0)
            assert job.id == f"high-{n}"
            delivered[job.id] += 1
            held.append(job)
        # the express marks name their holders while level 0 waits unread
        marks = redis.Redis.from_url(redis_server.url, decode_responses=True).hgetall(queue.keys.express)
        assert sorted(marks.values()) == sorted(job.consumer for job in held)
        # a worker's blocking read meets them after the unread entries
        while True:
            jobs, skipped = queue._read_blocking("blocked", 500, 10)
            if not jobs and not skipped:
                break
            delivered.update(job.id for job in jobs)
            queue.ack_many([(job, None) for job in jobs])
        for job in served(queue, "c9", 10_000, slots=100):
            delivered[job.id] += 1
        assert queue.ack_many([(job, None) for job in held]) == (50, 0)  # their holders still hold them
        assert set(delivered.values()) == {1} and len(delivered) == 3050
        stats = client.status()
        assert (stats.waiting, stats.in_flight, stats.succeeded, stats.duplicates) == (0, 0, 3050, 0)


def test_the_web_pages_reader_lists_jobs_waiting_with_a_priority_first(redis_server, pool_name, queue):
    from jobpool.queue.browse import open_browse

    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit({"n": 0}, id="plain")
        client.submit({"n": 1}, id="keyed", fairness_key="t1")
        client.submit({"n": 2}, id="urgent", task="resize", priority=8)
    browse = open_browse(queue.queue)
    page = queue.loop.run_until_complete(browse.queued())
    assert [(job.id, job.state, job.priority, job.fairness_key) for job in page.jobs] == [
        ("urgent", "waiting", 8, None),
        ("keyed", "waiting", 0, "t1"),
        ("plain", "waiting", 0, None),
    ]
    assert page.jobs[0].payload == {"n": 2} and page.jobs[0].task == "resize"
    found = queue.loop.run_until_complete(browse.job("urgent"))
    assert (found.state, found.priority) == ("waiting", 8)


def express_job(client, queue, consumer: str):
    """A level-9 job delivered to `consumer` past 100 unread level-0 entries (an express entry)."""
    client.submit_many(list(range(100)), [f"low-{n}" for n in range(100)])
    client.submit("urgent", id="urgent", priority=9)
    [job] = queue.fetch(consumer, 1, 0)
    assert job.id == "urgent"
    return job


def test_an_express_job_given_back_on_drain_goes_to_one_other_worker(redis_server, pool_name, queue):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        job = express_job(client, queue, "draining")
        assert client.job("urgent").worker == "draining"
        assert queue.release("draining", [job]) == 1
        [again] = queue.fetch("other", 1, 0)
        assert (again.id, again.attempts, client.job("urgent").worker) == ("urgent", 1, "other")
        rest = served(queue, "third", 200, slots=50)
        assert sorted(j.id for j in rest) == sorted(f"low-{n}" for n in range(100))
        assert queue.ack_many([(again, None)]) == (1, 0)
        assert client.status().in_flight == 0


def test_an_express_job_of_a_stalled_worker_is_reclaimed_once_and_its_late_ack_is_a_duplicate(
    redis_server, pool_name
):
    from tests.helpers import SyncQueue

    queue = SyncQueue(redis_server.url, "it", pool_name, visibility_timeout=0.3)
    try:
        with jobpool.Client(redis_server.url, "it", pool_name) as client:
            stalled = express_job(client, queue, "stalled")
            import time

            time.sleep(0.5)
            [reclaimed] = queue.fetch("rescuer", 1, 0)
            assert (reclaimed.id, reclaimed.attempts) == ("urgent", 2)
            assert client.job("urgent").worker == "rescuer"
            assert queue.ack_many([(stalled, None)]) == (0, 1)
            rest = served(queue, "third", 200, slots=50)
            assert "urgent" not in {j.id for j in rest} and len(rest) == 100
            assert queue.ack_many([(reclaimed, None)]) == (1, 0)
    finally:
        queue.delete_all()
        queue.close()


def test_a_running_express_job_is_cancelled_through_its_holders_heartbeat(redis_server, pool_name, queue):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        job = express_job(client, queue, "holder")
        assert client.cancel("urgent") == "cancelling"
        assert queue.heartbeat("holder", [job], 1, 1) == [job.token]
        assert (
            queue.fail(job, "cancelled", max_attempts=3, backoff=0, max_backoff=0, cancelled=True)
            == "cancelled"
        )
        assert client.job("urgent").state == "cancelled"
        assert "urgent" not in {j.id for j in served(queue, "third", 200, slots=50)}


def test_max_length_counts_the_jobs_waiting_at_every_level(redis_server, pool_name, queue):
    from jobpool.queue import QueueFull

    queue.configure(max_length=3)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit_many([1, 2], priority=9, fairness_key="t", wait=False)
        client.submit(3, wait=False)
        with pytest.raises(QueueFull, match="maxLength"):
            client.submit(4, priority=1, wait=False)
        [job] = queue.fetch("c1", 1, 0)
        queue.ack_many([(job, None)])
        client.submit(4, priority=1, wait=False)  # room again
        assert client.status().waiting_by_priority == {"9": 1, "1": 1, "0": 1}
