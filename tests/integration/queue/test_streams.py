"""The Redis Streams queue against a real redis-server: each guarantee of the queue itself."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
import redis as redis_sync

from jobpool.queue import QueueError, QueueFull, QueueUnavailable, open_queue
from jobpool.queue.keys import GROUP, PoolKeys
from tests.helpers import SyncQueue, free_port, wait_until


def test_submit_fetch_ack_stores_the_result(queue):
    [job_id] = queue.submit_many([{"src": "a.png"}])
    [job] = queue.fetch("c1", 10, 0)
    assert (job.id, job.payload, job.attempts) == (job_id, {"src": "a.png"}, 1)
    assert abs(job.enqueued_at - time.time()) < 5
    assert queue.ack_many([(job, {"ok": True})]) == (1, 0)
    result = queue.result(job_id)
    assert (result.id, result.result, result.attempts) == (job_id, {"ok": True}, 1)
    assert [(r.id, r.result) for r in queue.collect(queue.results())] == [(job_id, {"ok": True})]
    stats = queue.stats()
    assert (stats.waiting, stats.in_flight, stats.submitted, stats.succeeded) == (0, 0, 1, 1)


def test_acknowledged_entries_are_removed_from_the_stream(queue, redis_server):
    queue.submit_many(list(range(50)))
    jobs = queue.fetch("c1", 50, 0)
    queue.ack_many([(job, None) for job in jobs])
    raw = redis_sync.Redis.from_url(redis_server.url)
    keys = PoolKeys("it", queue.pool)
    assert raw.xlen(keys.stream) == 0
    assert raw.xpending(keys.stream, GROUP)["pending"] == 0
    assert raw.scard(keys.live) == 0


def test_ack_then_fetch_claims_only_the_slots_its_ack_freed_in_one_call(queue, redis_server):
    ids = queue.submit_many(list(range(5)))
    first = queue.fetch("c1", 2, 0)
    raw = redis_sync.Redis.from_url(redis_server.url)
    calls = script_runs(raw)
    succeeded, duplicates, more = queue.ack_then_fetch([(job, job.payload) for job in first], "c1", 2)
    assert script_runs(raw) == calls + 1
    assert (succeeded, duplicates) == (2, 0)
    assert [job.id for job in more] == ids[2:4] and {job.consumer for job in more} == {"c1"}
    assert raw.xpending(PoolKeys("it", queue.pool).stream, GROUP)["pending"] == 2
    assert [queue.result(i).result for i in ids[:2]] == [0, 1]
    # a late ack of a delivery the worker lost changes nothing, and the fetch still runs
    assert queue.ack_then_fetch([(first[0], "late")], "c1", 1)[:2] == (0, 1)
    assert queue.stats().in_flight == 3


def script_runs(raw: redis_sync.Redis) -> int:
    """Function calls that ran (not the ones refused before the library was loaded)."""
    stats = raw.info("commandstats").get("cmdstat_fcall", {})
    return stats.get("calls", 0) - stats.get("failed_calls", 0) - stats.get("rejected_calls", 0)


def test_caller_given_ids_are_enqueued_once_while_the_queue_knows_them(queue):
    assert queue.submit_many(["a", "b"], ["job-1", "job-2"]) == ["job-1", "job-2"]
    assert queue.submit_many(["again"], ["job-1"]) == ["job-1"]  # waiting
    jobs = queue.fetch("c1", 10, 0)
    assert [job.payload for job in jobs] == ["a", "b"]
    queue.submit_many(["again"], ["job-1"])  # in flight
    queue.ack_many([(jobs[0], 1)])
    queue.submit_many(["again"], ["job-1"])  # finished
    queue.fail(jobs[1], "boom", max_attempts=1, backoff=0, max_backoff=0)
    queue.submit_many(["again"], ["job-2"])  # dead
    assert queue.fetch("c1", 10, 0) == []
    assert queue.stats().submitted == 2


def test_duplicate_ids_in_one_batch_are_enqueued_once(queue):
    assert queue.submit_many([1, 2, 3], ["x", "x", None])[:2] == ["x", "x"]
    assert queue.stats().waiting == 2


def test_generated_ids_are_unique(queue):
    ids = queue.submit_many(list(range(3000))) + queue.submit_many(list(range(3000)))
    assert len(set(ids)) == 6000


def test_invalid_payload_or_id_is_refused_naming_the_job_and_nothing_is_submitted(queue):
    with pytest.raises(QueueError, match="job 1: payload is not JSON-serializable"):
        queue.submit_many([1, {1, 2}])
    with pytest.raises(QueueError, match="job 0: id must be a non-empty string"):
        queue.submit_many([1], [""])
    assert queue.stats().submitted == 0


def test_max_length_refuses_without_waiting_and_enqueues_nothing(queue):
    queue.configure(max_length=5)
    queue.submit_many(list(range(4)))
    with pytest.raises(QueueFull, match="maxLength"):
        queue.submit_many([4, 5], wait=False)
    assert queue.stats().waiting == 4
    queue.submit_many([4], wait=False)
    with pytest.raises(QueueFull):
        queue.submit_many([5], wait=True, timeout=0.3)


def test_a_submit_refused_part_way_names_the_ids_it_enqueued(queue):
    queue.configure(max_length=1200)
    with pytest.raises(QueueFull) as refused:
        queue.submit_many(list(range(2100)), [f"job-{n}" for n in range(2100)], wait=False)
    assert refused.value.submitted_ids == [f"job-{n}" for n in range(1000)]
    with pytest.raises(QueueFull) as timed_out:
        queue.submit_many(list(range(500)), wait=True, timeout=0.2)
    assert len(timed_out.value.submitted_ids) == 200
    assert queue.stats().waiting == 1200


def test_max_length_is_seen_by_every_submitter_and_waiting_ones_resume(queue, redis_server, pool_name):
    queue.configure(max_length=3)
    other = SyncQueue(redis_server.url, "it", pool_name)
    outcome = {}

    def submit_more():
        outcome["ids"] = other.submit_many(list(range(6)), wait=True, timeout=20)

    thread = threading.Thread(target=submit_more)
    thread.start()
    wait_until(lambda: queue.stats().waiting == 3, what="3 waiting jobs")
    time.sleep(0.2)
    assert queue.stats().submitted == 3  # the submitter waits at maxLength
    done = 0
    while done < 6:
        jobs = queue.fetch("c1", 2, 200)
        queue.ack_many([(job, None) for job in jobs])
        done += len(jobs)
    thread.join(20)
    other.close()
    assert len(outcome["ids"]) == 6 and queue.stats().succeeded == 6


def test_failed_job_is_retried_after_its_backoff_without_polling(queue):
    [job_id] = queue.submit_many(["x"])
    [job] = queue.fetch("c1", 1, 0)
    assert queue.fail(job, "boom", max_attempts=3, backoff=0.4, max_backoff=10) == "retried"
    stats = queue.stats()
    assert (stats.delayed, stats.waiting, stats.retried) == (1, 0, 1)
    started = time.monotonic()
    [again] = queue.fetch("c1", 1, 5000)  # blocks only until the retry is due
    waited = time.monotonic() - started
    assert again.id == job_id and again.attempts == 2
    assert 0.1 <= waited < 3


def test_job_is_dead_lettered_after_max_attempts_with_its_error(queue):
    [job_id] = queue.submit_many([{"n": 1}])
    for attempt in (1, 2, 3):
        [job] = queue.fetch("c1", 1, 2000)
        assert job.attempts == attempt
        outcome = queue.fail(job, f"error {attempt}", max_attempts=3, backoff=0.01, max_backoff=0.01)
    assert outcome == "dead_lettered"
    [dead] = queue.dead_letters()
    assert (dead.id, dead.payload, dead.attempts, dead.error) == (job_id, {"n": 1}, 3, "error 3")
    stats = queue.stats()
    assert (stats.dead_letter, stats.dead_lettered, stats.retried, stats.backlog) == (1, 1, 2, 0)


def test_replay_reruns_dead_jobs_and_counts_them_once(queue):
    queue.submit_many(["a", "b"], ["a", "b"])
    for job in queue.fetch("c1", 2, 0):
        queue.fail(job, "boom", max_attempts=1, backoff=0, max_backoff=0)
    assert queue.replay(["a"]) == 1
    [job] = queue.fetch("c1", 5, 0)
    assert (job.id, job.attempts) == ("a", 1)
    queue.fail(job, "boom again", max_attempts=1, backoff=0, max_backoff=0)
    stats = queue.stats()
    assert (stats.dead_letter, stats.dead_lettered) == (2, 2)
    assert queue.purge_dead_letters(["b"]) == 1
    assert [d.id for d in queue.dead_letters()] == ["a"]
    assert queue.replay() == 1 and queue.stats().waiting == 1
    assert queue.purge_dead_letters() == 0


def test_released_jobs_go_to_the_next_fetches_at_once_without_counting_an_attempt(queue):
    queue.submit_many(list(range(5)))
    jobs = queue.fetch("c1", 5, 0)
    assert queue.release("c1", jobs) == 5
    stats = queue.stats()
    assert (stats.waiting, stats.in_flight) == (5, 0)
    again = queue.fetch("c2", 2, 0) + queue.fetch("c3", 2, 0) + queue.fetch("c2", 2, 0)
    assert sorted(j.payload for j in again) == [0, 1, 2, 3, 4]
    assert {j.attempts for j in again} == {1}
    assert queue.stats().in_flight == 5


def test_a_silent_consumer_loses_its_jobs_after_the_visibility_timeout(redis_server, pool_name):
    q = SyncQueue(redis_server.url, "it", pool_name, visibility_timeout=0.3)
    try:
        q.submit_many(["a"])
        [job] = q.fetch("dead-worker", 1, 0)
        assert q.fetch("live-worker", 1, 0) == []
        [again] = wait_until(lambda: q.fetch("live-worker", 1, 100), timeout=5, what="redelivery")
        assert (again.id, again.attempts) == (job.id, 2)
    finally:
        q.delete_all()
        q.close()


def test_every_fetching_worker_reclaims_stale_jobs_into_its_free_slots(redis_server, pool_name):
    q = SyncQueue(redis_server.url, "it", pool_name, visibility_timeout=5)
    raw = redis_sync.Redis.from_url(redis_server.url, decode_responses=True)
    stream = PoolKeys("it", pool_name).stream
    try:
        q.submit_many(list(range(10)))
        dead = q.fetch("dead-worker", 8, 0)
        live = q.fetch("live-worker", 2, 0)
        # the dead worker's jobs look silent for longer than the visibility timeout
        raw.xclaim(stream, GROUP, "dead-worker", 0, [j.token for j in dead], idle=60_000, justid=True)
        q.heartbeat("live-worker", live, 2, 2)
        # the first reclaim may wait for the rest after a pass that found nothing stale ...
        first = wait_until(lambda: q.fetch("survivor-a", 3, 0), timeout=5, what="a reclaim")
        # ... but once stale jobs turn up, every fetch reclaims, not one worker per interval
        second, third = q.fetch("survivor-b", 3, 0), q.fetch("survivor-c", 5, 0)
        assert (len(first), len(second), len(third)) == (3, 3, 2)  # bounded by free slots
        assert {j.id for j in first + second + third} == {j.id for j in dead}
        assert {j.attempts for j in first + second + third} == {2}
        assert q.fetch("survivor-d", 5, 0) == []  # never the live one's
        assert len(raw.xpending_range(stream, GROUP, "-", "+", 10, "live-worker")) == 2
    finally:
        q.delete_all()
        q.close()


def test_heartbeats_keep_a_running_job_from_being_redelivered(redis_server, pool_name):
    q = SyncQueue(redis_server.url, "it", pool_name, visibility_timeout=0.3)
    try:
        q.submit_many(["long"])
        [job] = q.fetch("busy-worker", 1, 0)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            q.heartbeat("busy-worker", [job], 1, 1)
            assert q.fetch("other-worker", 1, 50) == []
            time.sleep(0.05)
        assert q.ack_many([(job, "done")]) == (1, 0)
    finally:
        q.delete_all()
        q.close()


def test_heartbeats_count_no_delivery_so_a_released_job_keeps_its_attempts(queue):
    queue.submit_many(["long"])
    [job] = queue.fetch("draining-worker", 1, 0)
    for _ in range(5):
        queue.heartbeat("draining-worker", [job], 1, 1)
    queue.release("draining-worker", [job])
    [again] = queue.fetch("next-worker", 1, 0)
    assert (again.id, again.attempts) == (job.id, 1)


def test_heartbeats_count_no_delivery_so_a_reclaimed_job_counts_one_more_attempt(redis_server, pool_name):
    q = SyncQueue(redis_server.url, "it", pool_name, visibility_timeout=0.3)
    try:
        q.submit_many(["long"])
        [job] = q.fetch("dying-worker", 1, 0)
        for _ in range(5):
            q.heartbeat("dying-worker", [job], 1, 1)
        [again] = wait_until(lambda: q.fetch("survivor", 1, 100), timeout=5, what="redelivery")
        assert (again.id, again.attempts) == (job.id, 2)
    finally:
        q.delete_all()
        q.close()


def test_a_draining_worker_releases_only_the_jobs_it_still_owns(redis_server, pool_name):
    q = SyncQueue(redis_server.url, "it", pool_name, visibility_timeout=0.3)
    raw = redis_sync.Redis.from_url(redis_server.url, decode_responses=True)
    stream = PoolKeys("it", pool_name).stream
    try:
        q.submit_many(["long"])
        [job] = q.fetch("draining-worker", 1, 0)
        [again] = wait_until(lambda: q.fetch("new-owner", 1, 100), timeout=5, what="redelivery")
        assert q.release("draining-worker", [job]) == 0
        [entry] = raw.xpending_range(stream, GROUP, "-", "+", 10)
        assert (entry["consumer"], entry["times_delivered"]) == ("new-owner", again.attempts)
        assert q.fetch("third-worker", 1, 0) == []
    finally:
        q.delete_all()
        q.close()


def test_a_stalled_workers_heartbeat_does_not_take_back_a_reclaimed_job(redis_server, pool_name):
    q = SyncQueue(redis_server.url, "it", pool_name, visibility_timeout=0.3)
    raw = redis_sync.Redis.from_url(redis_server.url, decode_responses=True)
    stream = PoolKeys("it", pool_name).stream
    try:
        q.submit_many(["long"])
        [job] = q.fetch("stalled-worker", 1, 0)
        [again] = wait_until(lambda: q.fetch("new-owner", 1, 100), timeout=5, what="redelivery")
        q.heartbeat("stalled-worker", [job], 1, 1)
        [entry] = raw.xpending_range(stream, GROUP, "-", "+", 10)
        assert (entry["consumer"], entry["times_delivered"]) == ("new-owner", again.attempts)
    finally:
        q.delete_all()
        q.close()


def test_a_second_completion_is_counted_as_a_duplicate_not_a_success(redis_server, pool_name):
    q = SyncQueue(redis_server.url, "it", pool_name, visibility_timeout=0.2)
    try:
        q.submit_many(["x"])
        [first] = q.fetch("slow-worker", 1, 0)
        [second] = wait_until(lambda: q.fetch("other-worker", 1, 100), timeout=5, what="redelivery")
        assert q.ack_many([(second, "from other")]) == (1, 0)
        assert q.ack_many([(first, "from slow")]) == (0, 1)
        assert q.fail(first, "late failure", max_attempts=1, backoff=0, max_backoff=0) == "duplicate"
        stats = q.stats()
        assert (stats.succeeded, stats.duplicates, stats.dead_lettered) == (1, 2, 0)
        assert q.result(first.id).result == "from other"
    finally:
        q.delete_all()
        q.close()


def test_workers_register_and_expire(redis_server, pool_name):
    q = SyncQueue(redis_server.url, "it", pool_name, visibility_timeout=0.5)
    try:
        q.submit_many([{"n": n} for n in range(4)])
        held_a, held_b = q.fetch("pod-a", 1, 0), q.fetch("pod-b", 3, 0)
        # a job held unacknowledged is a busy slot, whatever count the worker last published; a
        # published count covers slots whose timed-out threads still run (their jobs acknowledged)
        q.heartbeat("pod-a", held_a, 4, 0)
        q.heartbeat("pod-b", held_b, 4, 0)
        q.heartbeat("pod-c", [], 4, 2)
        stats = q.stats()
        assert [w.id for w in stats.workers] == ["pod-a", "pod-b", "pod-c"]
        assert [w.busy for w in stats.workers] == [1, 3, 2]
        assert (stats.busy_slots, stats.total_slots, stats.saturation, stats.in_flight) == (6, 12, 0.5, 4)
        q.unregister("pod-c")
        q.unregister("pod-b")
        assert [w.id for w in q.stats().workers] == ["pod-a"]
        wait_until(lambda: not q.stats().workers, timeout=5, what="pod-a to expire")
    finally:
        q.delete_all()
        q.close()


def test_status_keys_are_the_documented_ones(queue):
    assert list(queue.stats().as_status()) == [
        "waiting",
        "inFlight",
        "delayed",
        "scheduled",
        "deadLetter",
        "waitingByPriority",
        "submitted",
        "succeeded",
        "retried",
        "deadLettered",
        "permanent",
        "cancelled",
        "workers",
        "busySlots",
        "totalSlots",
        "saturation",
        "progress",
    ]


def test_delete_all_removes_exactly_the_pools_keys(redis_server, pool_name):
    mine = SyncQueue(redis_server.url, "it", pool_name)
    neighbour = SyncQueue(redis_server.url, "it", pool_name + "-x")
    try:
        for q in (mine, neighbour):
            ids = q.submit_many([1, 2, 3], ["a", "b", "c"])
            jobs = q.fetch("c", 3, 0)
            q.ack_many([(jobs[0], 1)])
            q.fail(jobs[1], "e", max_attempts=1, backoff=0, max_backoff=0)
            q.heartbeat("c", [jobs[2]], 1, 1)
        raw = redis_sync.Redis.from_url(redis_server.url)
        tag = PoolKeys("it", pool_name).tag
        assert all(k.decode().startswith(tag) for k in raw.keys(f"*{pool_name}}}*"))
        mine.delete_all()
        assert raw.keys(f"*/{pool_name}}}*") == []
        assert neighbour.stats().submitted == 3 and neighbour.result("a").result == 1
        assert ids == ["a", "b", "c"]
    finally:
        neighbour.delete_all()
        mine.close()
        neighbour.close()


def test_a_bad_url_is_refused_with_one_line():
    for url, fragment in [
        ("http://x", "unknown scheme 'http'"),
        ("", "no queue URL"),
        ("redis://h:99999/0", "invalid queue URL"),
        ("redis://h:1/x", "database 'x' is not a number"),
        ("redis://u:s3cret@h:abc/0", "port is not a number"),
        ("redis://h:1/x?password=s3cret", "database 'x' is not a number"),
    ]:
        with pytest.raises(QueueError, match=fragment) as caught:
            open_queue(url, "ns", "p")
        assert "\n" not in str(caught.value) and "s3cret" not in str(caught.value)


def test_an_unreachable_queue_raises_queue_unavailable_without_the_password():
    q = SyncQueue("redis://:s3cret@127.0.0.1:1/0", "ns", "p")
    try:
        with pytest.raises(QueueUnavailable) as caught:
            q.stats()
        message = str(caught.value)
        assert "cannot reach the queue at redis://:***@127.0.0.1:1/0" in message
        assert "s3cret" not in message and "\n" not in message
    finally:
        q.close()


def test_consumers_of_departed_workers_that_hold_nothing_are_removed(redis_server, pool_name):
    q = SyncQueue(redis_server.url, "it", pool_name, visibility_timeout=0.1)
    raw = redis_sync.Redis.from_url(redis_server.url, decode_responses=True)
    stream = PoolKeys("it", pool_name).stream
    try:
        q.submit_many(["a", "b"])
        [done] = q.fetch("finished-worker", 1, 0)
        q.ack_many([(done, None)])
        [held] = q.fetch("busy-worker", 1, 0)

        def names():
            return {c["name"] for c in raw.xinfo_consumers(stream, "workers")}

        assert names() == {"finished-worker", "busy-worker"}

        def only_the_busy_one_is_left():
            q.heartbeat("busy-worker", [held], 1, 1)
            q.fetch("live-worker", 1, 50)
            return "finished-worker" not in names() and "busy-worker" in names()

        wait_until(only_the_busy_one_is_left, timeout=10, what="the idle consumer to be removed")
    finally:
        q.delete_all()
        q.close()


def test_payloads_and_results_survive_the_round_trip_unchanged(queue):
    awkward = ["a\x00b", "1:0:x", "line\nbreak", "é ✓ 🚀", {"": [None, True, 1.5, -7]}, "", "\\0", 2**70]
    ids = queue.submit_many(awkward)
    jobs = queue.fetch("c", len(awkward), 0)
    assert [j.payload for j in jobs] == awkward
    retried = jobs[:4]
    for job in retried:
        queue.fail(job, "again", max_attempts=2, backoff=0, max_backoff=0)
    queue.ack_many([(job, {"echo": job.payload}) for job in jobs[4:]])
    again = wait_until(lambda: queue.fetch("c", 10, 200), what="the retries")
    assert sorted(map(repr, (j.payload for j in again))) == sorted(map(repr, awkward[:4]))
    queue.ack_many([(job, {"echo": job.payload}) for job in again])
    assert [queue.result(i).result for i in ids] == [{"echo": p} for p in awkward]


class ReplyDroppingProxy:
    """A TCP proxy in front of redis-server that, once armed, lets one command containing a
    marker run on the server and then cuts the connection before the reply gets through."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.marker: bytes | None = None
        self.dropped = 0
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_reply_after(self, marker: bytes) -> None:
        self.marker = marker

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            cut = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, cut), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, cut), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, cut: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.marker and self.marker in data:
                    cut.set()
                upstream.sendall(data)

    def _replies(self, upstream: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if cut.is_set() and not data.startswith(b"-"):  # the script ran: lose its reply
                    self.marker = None
                    self.dropped += 1
                    for end in (client, upstream):
                        end.shutdown(socket.SHUT_RDWR)
                        end.close()
                    return
                cut.clear()
                client.sendall(data)

    def close(self) -> None:
        self.listener.close()


def test_a_submit_resent_after_its_reply_was_lost_enqueues_generated_ids_once(redis_server, pool_name):
    proxy = ReplyDroppingProxy(redis_server.port)
    q = SyncQueue(f"redis://127.0.0.1:{proxy.port}/0", "it", pool_name)
    try:
        q.submit_many(["warm-up"])
        proxy.drop_reply_after(b"resend-probe")
        ids = q.submit_many(["resend-probe-1", "resend-probe-2"])
        assert proxy.dropped == 1  # the submit ran and was sent again
        stats = q.stats()
        assert (stats.submitted, stats.waiting) == (3, 3)
        jobs = q.fetch("c", 10, 0)
        assert sorted(j.payload for j in jobs) == ["resend-probe-1", "resend-probe-2", "warm-up"]
        assert set(ids) <= {j.id for j in jobs}
    finally:
        q.delete_all()
        q.close()
        proxy.close()


def test_an_ack_resent_after_its_reply_was_lost_is_not_a_duplicate(redis_server, pool_name):
    proxy = ReplyDroppingProxy(redis_server.port)
    q = SyncQueue(f"redis://127.0.0.1:{proxy.port}/0", "it", pool_name)
    try:
        q.submit_many(["x", "y"])
        first, second = q.fetch("c", 2, 0)
        assert q.ack_many([(first, "warm-up")]) == (1, 0)
        proxy.drop_reply_after(b"resend-probe")
        assert q.ack_many([(second, "resend-probe")]) == (1, 0)
        assert proxy.dropped == 1  # the ack ran and was sent again
        stats = q.stats()
        assert (stats.succeeded, stats.duplicates) == (2, 0)
        assert q.result(second.id).result == "resend-probe"
    finally:
        q.delete_all()
        q.close()
        proxy.close()


@pytest.mark.parametrize("max_attempts,outcome", [(2, "retried"), (1, "dead_lettered")])
def test_a_failure_resent_after_its_reply_was_lost_is_recorded_once(
    redis_server, pool_name, max_attempts, outcome
):
    proxy = ReplyDroppingProxy(redis_server.port)
    q = SyncQueue(f"redis://127.0.0.1:{proxy.port}/0", "it", pool_name)
    try:
        q.submit_many(["x"])
        [job] = q.fetch("c", 1, 0)
        proxy.drop_reply_after(b"resend-probe")
        assert q.fail(job, "resend-probe", max_attempts=max_attempts, backoff=60, max_backoff=60) == outcome
        assert proxy.dropped == 1  # the failure ran and was sent again
        stats = q.stats()
        assert (stats.retried, stats.dead_lettered, stats.duplicates) == (
            (1, 0, 0) if outcome == "retried" else (0, 1, 0)
        )
        assert (stats.delayed, stats.dead_letter) == ((1, 0) if outcome == "retried" else (0, 1))
    finally:
        q.delete_all()
        q.close()
        proxy.close()


def test_a_stale_workers_late_ack_is_a_duplicate_and_the_owners_result_is_kept(redis_server, pool_name):
    q = SyncQueue(redis_server.url, "it", pool_name, visibility_timeout=0.2)
    raw = redis_sync.Redis.from_url(redis_server.url, decode_responses=True)
    stream = PoolKeys("it", pool_name).stream
    try:
        q.submit_many(["x"])
        [stale] = q.fetch("stalled-worker", 1, 0)
        [owned] = wait_until(lambda: q.fetch("new-owner", 1, 100), timeout=5, what="redelivery")
        assert q.ack_many([(stale, "from the stalled worker")]) == (0, 1)
        [entry] = raw.xpending_range(stream, GROUP, "-", "+", 10)
        assert entry["consumer"] == "new-owner"  # still running there, not taken away
        assert q.result(stale.id) is None
        assert q.ack_many([(owned, "from the owner")]) == (1, 0)
        assert q.result(owned.id).result == "from the owner"
        stats = q.stats()
        assert (stats.succeeded, stats.duplicates, stats.backlog) == (1, 1, 0)
    finally:
        q.delete_all()
        q.close()


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_a_stale_workers_failure_neither_retries_nor_dead_letters_a_job_another_worker_holds(
    redis_server, pool_name, max_attempts
):
    q = SyncQueue(redis_server.url, "it", pool_name, visibility_timeout=0.2)
    try:
        q.submit_many(["x"])
        [stale] = q.fetch("stalled-worker", 1, 0)
        [owned] = wait_until(lambda: q.fetch("new-owner", 1, 100), timeout=5, what="redelivery")
        assert (
            q.fail(stale, "late failure", max_attempts=max_attempts, backoff=0, max_backoff=0) == "duplicate"
        )
        assert q.ack_many([(owned, "done")]) == (1, 0)
        assert (
            q.fail(stale, "later still", max_attempts=max_attempts, backoff=0, max_backoff=0) == "duplicate"
        )
        stats = q.stats()
        assert (stats.succeeded, stats.retried, stats.dead_lettered) == (1, 0, 0)
        assert (stats.delayed, stats.dead_letter, stats.backlog, stats.duplicates) == (0, 0, 0, 2)
        assert q.fetch("third-worker", 1, 300) == []
    finally:
        q.delete_all()
        q.close()
