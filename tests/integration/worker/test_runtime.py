"""Real `jobpool worker` processes against a real redis-server: the worker's guarantees of the
README ("Command line") and of docs/queue.md ("How the queue works"): kill -9, drain, dead letters,
bounds, restarts, memory, back-off."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis as redis_sync

from jobpool.queue.keys import GROUP, PoolKeys
from tests.helpers import wait_until
from tests.integration.handlers import events

SLEEPY = "tests.integration.handlers:sleepy"


def test_a_job_killed_with_its_worker_completes_on_another_worker(queue, spawn_worker, tmp_path):
    log = tmp_path / "jobs.log"
    fast = dict(visibility_timeout=1.5, heartbeat_interval=0.3, env={"JOBPOOL_TEST_LOG": str(log)})
    first = spawn_worker(handler=SLEEPY, **fast)
    [job_id] = queue.submit_many([{"n": 1, "seconds": 1.0}])
    wait_until(lambda: ("start", 1, first.pid) in events(log), what="the job to start")
    first.kill()
    second = spawn_worker(handler=SLEEPY, **fast)
    result = queue.result(job_id, timeout=20)
    assert result is not None and result.result == 1 and result.attempts == 2
    assert ("end", 1, second.pid) in events(log)
    assert ("end", 1, first.pid) not in events(log)
    stats = queue.stats()
    assert (stats.succeeded, stats.in_flight, stats.waiting) == (1, 0, 0)


def test_sigterm_drains_in_flight_jobs_and_releases_the_rest(queue, spawn_worker, tmp_path):
    log = tmp_path / "jobs.log"
    env = {"JOBPOOL_TEST_LOG": str(log)}
    worker = spawn_worker(handler=SLEEPY, concurrency=2, drain_seconds=1.5, env=env)
    short_id, long_id = queue.submit_many([{"n": 1, "seconds": 0.5}, {"n": 2, "seconds": 60}])
    wait_until(
        lambda: {("start", 1, worker.pid), ("start", 2, worker.pid)} <= set(events(log)),
        what="both jobs to start",
    )
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert queue.result(short_id).result == 1  # finished within the drain time
    stats = queue.stats()
    assert (stats.waiting, stats.in_flight, stats.succeeded) == (1, 0, 1)
    assert "released for immediate redelivery" in worker.log()
    # released at once: a new worker starts it long before the 30 s visibility timeout
    successor = spawn_worker(handler=SLEEPY, env=env)
    wait_until(
        lambda: ("start", 2, successor.pid) in events(log),
        timeout=10,
        what="the released job to start on the next worker",
    )
    assert queue.result(long_id) is None


def test_jobs_fetched_as_the_stop_arrives_are_released_at_once_not_after_the_drain(
    queue, spawn_worker, tmp_path, metrics_port
):
    log = tmp_path / "jobs.log"
    env = {"JOBPOOL_TEST_LOG": str(log)}
    worker = spawn_worker(
        handler=SLEEPY,
        concurrency=2,
        drain_seconds=30,
        visibility_timeout=60,
        env=env,
        metrics_port=metrics_port,
    )
    queue.submit_many([{"n": 1, "seconds": 60}])
    wait_until(lambda: ("start", 1, worker.pid) in events(log), what="the long job to start")
    worker.send(signal.SIGTERM)
    wait_until(lambda: draining(metrics_port), what="the drain to begin")
    # the free slot's blocking read (up to a second) is still under way and gets this job
    queue.submit_many([{"n": 2, "seconds": 0}])
    successor = spawn_worker(handler=SLEEPY, env=env)
    wait_until(
        lambda: ("end", 2, successor.pid) in events(log),
        timeout=8,
        what="the job to run on the next worker while the first one still drains",
    )
    assert worker.alive()
    assert ("start", 2, worker.pid) not in events(log)


def test_a_second_signal_exits_at_once_and_the_job_is_redelivered(
    queue, spawn_worker, tmp_path, metrics_port
):
    log = tmp_path / "jobs.log"
    fast = dict(
        visibility_timeout=1.5, heartbeat_interval=0.3, drain_seconds=60, env={"JOBPOOL_TEST_LOG": str(log)}
    )
    worker = spawn_worker(handler=SLEEPY, metrics_port=metrics_port, **fast)
    queue.submit_many([{"n": 1, "seconds": 30}])
    wait_until(lambda: ("start", 1, worker.pid) in events(log), what="the job to start")
    worker.send(signal.SIGTERM)
    wait_until(lambda: draining(metrics_port), what="the drain to begin")
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=5) != 0
    assert queue.stats().in_flight == 1  # still pending, not lost
    other = spawn_worker(handler=SLEEPY, **fast)
    wait_until(
        lambda: ("start", 1, other.pid) in events(log),
        timeout=15,
        what="redelivery after the visibility timeout",
    )


def test_a_poison_job_ends_in_the_dead_letters_after_max_attempts(queue, spawn_worker, redis_server):
    spawn_worker(handler="tests.integration.handlers:poison", max_attempts=3, backoff=0.05, max_backoff=0.2)
    queue.submit_many([{"bad": True}], ["poison-1"])
    # an entry whose payload is not JSON, as another producer might write it
    raw = redis_sync.Redis.from_url(redis_server.url)
    raw.xadd(
        PoolKeys("it", queue.pool).stream,
        {"id": "garbled-1", "p": "{not json", "a": "0", "t": str(int(time.time() * 1000))},
    )
    wait_until(lambda: queue.stats().dead_letter == 2, what="two dead letters")
    dead = {d.id: d for d in queue.dead_letters()}
    assert dead["poison-1"].attempts == 3 and dead["poison-1"].payload == {"bad": True}
    assert dead["poison-1"].error.startswith("ValueError: cannot handle {'bad': True}")
    assert dead["garbled-1"].attempts == 3 and dead["garbled-1"].payload == "{not json"
    assert dead["garbled-1"].error.startswith("payload is not valid JSON")
    stats = queue.stats()
    assert (stats.retried, stats.dead_lettered, stats.backlog) == (4, 2, 0)


def test_a_permanent_error_dead_letters_at_once_and_is_counted_apart(queue, spawn_worker):
    spawn_worker(handler="tests.integration.handlers:refuse", max_attempts=5, backoff=0.05)
    queue.submit_many(["a.txt"], ["refused-1"])
    wait_until(lambda: queue.stats().dead_letter == 1, timeout=15, what="a dead letter")
    [dead] = queue.dead_letters()
    assert (dead.id, dead.attempts) == ("refused-1", 1)
    assert dead.error.startswith("jobpool.Permanent: cannot resize 'a.txt': not an image")
    stats = queue.stats()
    assert (stats.retried, stats.dead_lettered, stats.permanent) == (0, 0, 1)
    assert stats.as_status()["permanent"] == 1


def test_a_command_exiting_with_the_permanent_status_dead_letters_at_once(queue, spawn_worker):
    from jobpool.worker.runners import PERMANENT_EXIT_STATUS

    program = f"import sys; sys.exit({PERMANENT_EXIT_STATUS}) if sys.stdin.read().strip() == '\"bad\"' else print(1)"
    spawn_worker(command=[sys.executable, "-c", program], max_attempts=5, backoff=0.05)
    queue.submit_many(["bad", "good"], ["bad", "good"])
    wait_until(lambda: queue.stats().dead_letter == 1, timeout=15, what="a dead letter")
    assert queue.result("good", timeout=15).result == 1
    [dead] = queue.dead_letters()
    assert (dead.id, dead.attempts) == ("bad", 1)
    assert dead.error.startswith(f"command exited with status {PERMANENT_EXIT_STATUS} (permanent)")
    assert (queue.stats().retried, queue.stats().permanent) == (0, 1)


def test_a_worker_never_holds_more_jobs_than_its_slots(queue, spawn_worker, tmp_path, redis_server):
    log = tmp_path / "jobs.log"
    worker = spawn_worker(handler=SLEEPY, concurrency=3, env={"JOBPOOL_TEST_LOG": str(log)})
    ids = queue.submit_many([{"n": n, "seconds": 0.1} for n in range(30)])
    raw = redis_sync.Redis.from_url(redis_server.url)
    stream = PoolKeys("it", queue.pool).stream
    most_held = 0
    deadline = time.monotonic() + 30
    while queue.stats().succeeded < 30 and time.monotonic() < deadline:
        held = raw.xpending_range(stream, GROUP, "-", "+", 100, consumername=worker.name)
        most_held = max(most_held, len(held))
        time.sleep(0.005)
    assert queue.stats().succeeded == 30
    assert 1 <= most_held <= 3
    running = most_running = 0
    for kind, _, _ in events(log):
        running += 1 if kind == "start" else -1
        most_running = max(most_running, running)
    assert most_running == 3
    assert all(queue.result(i) for i in ids)


def test_a_long_job_is_never_stolen_while_it_runs(queue, spawn_worker, tmp_path):
    log = tmp_path / "jobs.log"
    fast = dict(visibility_timeout=1.5, heartbeat_interval=0.2, env={"JOBPOOL_TEST_LOG": str(log)})
    spawn_worker(handler=SLEEPY, **fast)
    spawn_worker(handler=SLEEPY, **fast)
    [job_id] = queue.submit_many([{"n": 1, "seconds": 3.5}])
    result = queue.result(job_id, timeout=20)
    assert result.attempts == 1
    assert len([e for e in events(log) if e[0] == "start"]) == 1
    assert queue.stats().duplicates == 0


def test_no_acknowledged_job_is_lost_when_redis_restarts_with_aof(queue, spawn_worker, redis_server):
    worker = spawn_worker(
        handler="tests.integration.handlers:echo",
        concurrency=20,
        visibility_timeout=2,
        heartbeat_interval=0.5,
    )
    ids = queue.submit_many(list(range(3000)))
    wait_until(lambda: queue.stats().succeeded >= 500, what="some jobs to finish")
    redis_server.restart()
    wait_until(
        lambda: queue.stats().succeeded + queue.stats().duplicates >= 3000,
        timeout=60,
        interval=0.2,
        what="all jobs to finish after the restart",
    )
    stats = queue.stats()
    assert stats.submitted == 3000 and stats.succeeded == 3000
    assert stats.backlog == 0
    missing = [i for i in ids if queue.result(i) is None]
    assert missing == []
    assert worker.alive()


def test_the_worker_backs_off_while_the_queue_is_down_and_recovers(
    queue, spawn_worker, redis_server, metrics_port
):
    redis_server.stop()
    try:
        worker = spawn_worker(handler="tests.integration.handlers:echo", metrics_port=metrics_port)
        wait_until(lambda: queue_reachable(metrics_port) is False, what="the queue reported unreachable")
        time.sleep(1.0)
        assert worker.alive()
        assert 1 <= worker.log().count("cannot reach the queue") <= 3  # backs off, no busy loop
    finally:
        redis_server.start()
    wait_until(lambda: queue_reachable(metrics_port), timeout=20, what="the worker to reconnect")
    [job_id] = queue.submit_many(["after"])
    assert queue.result(job_id, timeout=10).result == {"echo": "after"}


@pytest.mark.slow
def test_memory_stays_bounded_after_100k_jobs(queue, spawn_worker, redis_server):
    raw = redis_sync.Redis.from_url(redis_server.url)
    keys = PoolKeys("it", queue.pool)
    memory_before = raw.info("memory")["used_memory"]
    for _ in range(2):
        spawn_worker(handler="tests.integration.handlers:noop", concurrency=50, result_ttl=5)
    queue.submit_many(list(range(100_000)))
    wait_until(
        lambda: queue.stats().succeeded == 100_000, timeout=240, interval=0.5, what="100k jobs to finish"
    )
    assert raw.xlen(keys.stream) == 0
    assert raw.xpending(keys.stream, GROUP)["pending"] == 0
    assert raw.scard(keys.live) == 0 and raw.zcard(keys.delayed) == 0
    assert raw.memory_usage(keys.stream) < 64 * 1024
    assert raw.xlen(keys.results) <= 110_000  # capped (approximately) at 100k

    def pool_keys() -> list[bytes]:
        return list(raw.scan_iter(match=keys.scan_pattern, count=10_000))

    # once the result TTL has passed only the pool's fixed keys remain, not one per job
    wait_until(
        lambda: len(pool_keys()) <= 12,
        timeout=30,
        interval=0.5,
        what=f"the results to expire (keys left: {len(pool_keys())})",
    )
    # what remains is the capped results stream (about 6 MB here) and little else
    grown = raw.info("memory")["used_memory"] - memory_before
    results_stream = raw.memory_usage(keys.results)
    assert grown < results_stream + 8 * 1024 * 1024, f"redis grew by {grown} bytes"


def test_a_result_is_kept_for_the_workers_result_ttl(queue, spawn_worker, redis_server):
    spawn_worker(handler="tests.integration.handlers:echo", result_ttl=1.5)
    [job_id] = queue.submit_many(["kept briefly"])
    assert queue.result(job_id, timeout=10).result == {"echo": "kept briefly"}
    raw = redis_sync.Redis.from_url(redis_server.url)
    assert 0 < raw.pttl(PoolKeys("it", queue.pool).result(job_id)) <= 1500
    wait_until(lambda: queue.result(job_id) is None, timeout=10, what="the result to expire")


def test_a_worker_keeps_at_most_max_results_results(queue, spawn_worker):
    """The oldest results over --max-results go with their result keys, also when the worker's
    ack carries its next fetch (one free slot: every ack does)."""
    spawn_worker(handler="tests.integration.handlers:echo", concurrency=1, max_results=3)
    ids = queue.submit_many(list(range(10)))
    wait_until(
        lambda: [r.id for r in queue.collect(queue.results())] == ids[-3:],
        timeout=20,
        what="only the 3 newest results kept",
    )
    assert [queue.result(job_id) for job_id in ids[:7]] == [None] * 7
    assert queue.result(ids[-1]).result == {"echo": 9}


def test_command_handler_gets_stdin_and_returns_stdout(queue, spawn_worker):
    program = "import json,sys; p=json.load(sys.stdin); print(json.dumps({'doubled': p * 2}))"
    spawn_worker(command=[sys.executable, "-c", program], concurrency=2)
    [job_id] = queue.submit_many([21])
    assert queue.result(job_id, timeout=15).result == {"doubled": 42}


def test_command_failure_and_timeout_are_failed_attempts_with_their_error(queue, spawn_worker, tmp_path):
    pids = tmp_path / "pids"
    program = (
        "import json,os,sys,time; p=json.load(sys.stdin)\n"
        f"open({str(pids)!r},'a').write(f'{{os.getpid()}}\\n')\n"
        "if p == 'fail': sys.exit('broken input: ' + p)\n"
        "time.sleep(60)"
    )
    spawn_worker(command=[sys.executable, "-c", program], concurrency=2, timeout=0.5, max_attempts=1)
    queue.submit_many(["fail", "hang"], ["fail", "hang"])
    wait_until(lambda: queue.stats().dead_letter == 2, timeout=20, what="two dead letters")
    dead = {d.id: d.error for d in queue.dead_letters()}
    assert dead["fail"] == "command exited with status 1: broken input: fail"
    assert dead["hang"] == "timed out after 0.5s"
    for pid in map(int, pids.read_text().split()):
        wait_until(lambda: not _alive(pid), timeout=5, what=f"process {pid} to be killed")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def test_sync_handlers_run_in_threads(queue, spawn_worker):
    spawn_worker(handler="tests.integration.handlers:square", concurrency=4)
    ids = queue.submit_many([3, 4])
    assert [queue.result(i, timeout=15).result for i in ids] == [9, 16]


def test_metrics_and_healthz_are_served(queue, spawn_worker, metrics_port):
    spawn_worker(handler="tests.integration.handlers:echo", concurrency=5, metrics_port=metrics_port)
    [job_id] = queue.submit_many(["m"])
    assert queue.result(job_id, timeout=15)
    url = f"http://127.0.0.1:{metrics_port}"
    text = wait_until(lambda: _get(url + "/metrics"), what="the metrics endpoint")
    for name in (
        "jobpool_worker_slots",
        "jobpool_worker_busy_slots",
        "jobpool_worker_jobs_total",
        "jobpool_job_duration_seconds",
        "jobpool_job_wait_seconds",
    ):
        assert name in text
    assert f'jobpool_worker_slots{{namespace="it",pool="{queue.pool}"}} 5.0' in text
    assert (
        f'jobpool_worker_jobs_total{{namespace="it",outcome="succeeded",pool="{queue.pool}"}} 1.0'
    ) in text
    assert json.loads(_get(url + "/healthz"))["status"] == "ok"


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


def test_a_drain_does_not_wait_for_a_sync_handler_stuck_in_its_thread(queue, spawn_worker):
    worker = spawn_worker(handler="tests.integration.handlers:slow_sync", drain_seconds=0.5)
    [job_id] = queue.submit_many([120])
    wait_until(lambda: queue.stats().in_flight == 1, what="the job to start")
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    stats = queue.stats()
    assert (stats.waiting, stats.in_flight) == (1, 0)  # released, not lost
    assert queue.result(job_id) is None


def timed_events(log: Path) -> list[tuple[str, int, float]]:
    """(start|end, job number, time) lines written by the `sleepy`/`stuck_sync` handlers."""
    if not log.exists():
        return []
    return [
        (kind, int(n), float(at))
        for kind, n, _, at in (line.split() for line in log.read_text().splitlines() if line)
    ]


def test_a_timed_out_sync_thread_keeps_its_slot_until_it_returns(queue, spawn_worker, tmp_path):
    log = tmp_path / "jobs.log"
    worker = spawn_worker(
        handler="tests.integration.handlers:stuck_sync",
        concurrency=2,
        timeout=1.5,
        max_attempts=1,
        heartbeat_interval=0.1,
        env={"JOBPOOL_TEST_LOG": str(log)},
    )
    # both threads overrun the 1.5 s timeout; the second returns before the worker gives up
    stuck = queue.submit_many([{"n": 1, "seconds": 3.5}, {"n": 2, "seconds": 2.2}])
    wait_until(lambda: len(timed_events(log)) == 2, what="the stuck jobs to start")
    quick = queue.submit_many([{"n": 3}, {"n": 4}])

    def failed_at_deadline_slots_still_busy():
        stats = queue.stats()
        return (
            stats.dead_letter == 2
            and [w.busy for w in stats.workers] == [2]
            and (stats.waiting, stats.in_flight) == (2, 0)  # not fetched into
            and not any(kind == "end" for kind, _, _ in timed_events(log))
        )

    wait_until(
        failed_at_deadline_slots_still_busy,
        timeout=4,
        what="both jobs failed at their deadline while their threads still run and the quick jobs still wait",
    )
    assert {d.id for d in queue.dead_letters()} == set(stuck)
    assert all(d.error == "timed out after 1.5s" for d in queue.dead_letters())
    for job_id in stuck:
        assert f"job {job_id} timed out after 1.5s but its handler thread is still running" in worker.log()
    assert [queue.result(i, timeout=15).result for i in quick] == [3, 4]
    wait_until(lambda: len(timed_events(log)) == 8, what="every thread to return")
    first_end = min(at for kind, _, at in timed_events(log) if kind == "end")
    assert all(at >= first_end for kind, n, at in timed_events(log) if kind == "start" and n in (3, 4))
    running = most_running = 0
    for kind, _, _ in sorted(timed_events(log), key=lambda e: e[2]):
        running += 1 if kind == "start" else -1
        most_running = max(most_running, running)
    assert most_running == 2
    assert "its handler thread returned after" in worker.log() and worker.alive()


def test_a_worker_whose_slots_all_stay_overrun_exits_3_without_losing_jobs(queue, spawn_worker, tmp_path):
    log = tmp_path / "jobs.log"
    worker = spawn_worker(
        handler="tests.integration.handlers:stuck_sync",
        timeout=0.3,
        max_attempts=1,
        env={"JOBPOOL_TEST_LOG": str(log)},
    )
    [job_id] = queue.submit_many([{"n": 1, "seconds": 120}])
    assert worker.wait(timeout=20) == 3
    assert (
        f"all 1 slots are occupied by handler threads that overran the 0.3s timeout (jobs "
        f"{job_id}, already failed)" in worker.log()
    )
    stats = queue.stats()
    assert (stats.dead_letter, stats.backlog, stats.workers) == (1, 0, ())
    assert [d.id for d in queue.dead_letters()] == [job_id]


def test_survivors_finish_the_jobs_of_two_killed_workers_and_steal_none(queue, spawn_worker, tmp_path):
    log = tmp_path / "jobs.log"
    fast = dict(
        handler="tests.integration.handlers:held", concurrency=8, visibility_timeout=1, heartbeat_interval=0.2
    )
    doomed = [
        spawn_worker(env={"JOBPOOL_TEST_LOG": str(log), "JOBPOOL_TEST_HOLD_SECONDS": "600"}, **fast)
        for _ in range(2)
    ]
    ids = queue.submit_many([{"n": n} for n in range(16)])
    wait_until(lambda: len(events(log)) == 16, what="the doomed workers to take every job")
    assert sorted(pid for _, _, pid in events(log)) == sorted([doomed[0].pid, doomed[1].pid] * 8)
    survivors = [spawn_worker(env={"JOBPOOL_TEST_LOG": str(log)}, **fast) for _ in range(2)]
    wait_until(lambda: len(queue.stats().workers) == 4, what="the survivors to register")
    # the survivors fetch for three visibility timeouts while the holders heartbeat
    time.sleep(3)
    assert len(events(log)) == 16
    killed_at = time.time()
    for worker in doomed:
        worker.kill()
    results = [queue.result(i, timeout=30) for i in ids]
    assert [r.result for r in results] == list(range(16))
    assert {r.attempts for r in results} == {2}
    survivor_pids = {w.pid for w in survivors}
    again = [
        (n, pid, at)
        for (kind, n, pid), (_, _, at) in zip(events(log), timed_events(log))
        if kind == "start" and pid in survivor_pids
    ]
    assert sorted(n for n, _, _ in again) == list(range(16))
    assert all(at > killed_at for _, _, at in again)
    stats = queue.stats()
    assert (stats.succeeded, stats.duplicates, stats.backlog) == (16, 0, 0)


def test_the_busy_count_is_published_when_it_changes_not_only_on_heartbeat(queue, spawn_worker, tmp_path):
    log = tmp_path / "jobs.log"
    # heartbeats every 20 s: anything seen sooner was published because the count changed
    worker = spawn_worker(
        handler=SLEEPY,
        concurrency=4,
        visibility_timeout=60,
        heartbeat_interval=20,
        env={"JOBPOOL_TEST_LOG": str(log)},
    )

    def busy() -> int | None:
        mine = [w for w in queue.stats().workers if w.id == worker.name]
        return mine[0].busy if mine else None

    wait_until(lambda: busy() == 0, timeout=10, what="the worker to register idle")
    ids = queue.submit_many([{"n": n, "seconds": 3} for n in range(4)])
    wait_until(lambda: busy() == 4, timeout=2.5, what="4 busy slots to be published")
    wait_until(lambda: all(queue.result(i) for i in ids), timeout=15, what="the jobs to finish")
    wait_until(lambda: busy() == 0, timeout=1.5, what="0 busy slots to be published")


SCRIPTED = "tests.integration.handlers:scripted"


def codepoints(text: str) -> list[int]:
    return [ord(c) for c in text]


# the hang was a race (1 to 3 trials in 3): `make test-fast` runs one trial, `make test` four
@pytest.mark.parametrize("trial", [0, *(pytest.param(n, marks=pytest.mark.slow) for n in range(1, 4))])
def test_sigterm_drain_exits_after_a_peer_was_killed_while_jobs_flow(queue, spawn_worker, trial):
    fast = dict(
        handler="tests.integration.handlers:slow_sync",
        concurrency=8,
        visibility_timeout=1,
        heartbeat_interval=0.2,
        drain_seconds=10,
    )
    killed, drained, survivor = (spawn_worker(**fast) for _ in range(3))
    wait_until(lambda: len(queue.stats().workers) == 3, what="the workers to register")
    queue.submit_many([0.05] * 1000)
    wait_until(lambda: queue.stats().succeeded >= 150, what="the jobs to flow")
    killed.kill()
    time.sleep(0.5)  # the reported scenario: SIGTERM half a second after the kill
    drained.send(signal.SIGTERM)
    assert drained.wait(timeout=20) == 0
    wait_until(
        lambda: queue.stats().succeeded == 1000,
        timeout=60,
        interval=0.2,
        what="the survivor to finish every job",
    )
    assert survivor.alive()


def test_results_and_errors_with_lone_surrogates_are_stored_and_the_worker_goes_on(queue, spawn_worker):
    name = os.fsdecode(b"scan-\xff.png")  # what os.fsdecode makes of a non-UTF-8 name
    spawn_worker(handler=SCRIPTED, max_attempts=1)
    returned, raised, failed = queue.submit_many(
        [
            {"do": "return", "text": codepoints(name)},
            {"do": "raise", "text": codepoints(name)},
            {"do": "fail", "text": codepoints(name)},
        ]
    )
    assert queue.result(returned, timeout=10).result == {"text": name, "also": [name]}
    wait_until(lambda: queue.stats().dead_letter == 2, timeout=10, what="two dead letters")
    dead = {d.id: d.error for d in queue.dead_letters()}
    assert dead[raised].startswith("ValueError: scan-\\udcff.png\n")
    assert dead[failed] == "scan-\\udcff.png"
    [later] = queue.submit_many(["still acknowledged"])
    assert queue.result(later, timeout=10).result == "still acknowledged"
    stats = queue.stats()
    assert (stats.succeeded, stats.dead_lettered, stats.backlog) == (2, 2, 0)


def test_foreign_entries_that_cannot_be_decoded_are_dead_lettered_and_the_worker_goes_on(
    queue, spawn_worker, redis_server
):
    worker = spawn_worker(handler=SCRIPTED, concurrency=4, max_attempts=1)
    raw = redis_sync.Redis.from_url(redis_server.url)
    stream = PoolKeys("it", queue.pool).stream
    now = str(int(time.time() * 1000))
    raw.xadd(stream, {"id": "latin-1", "p": b'{"name": "caf\xe9"}', "a": "0", "t": now})
    raw.xadd(stream, {"id": "nested", "p": "[" * 100_000 + "]" * 100_000, "a": "0", "t": now})
    bad_id = raw.xadd(stream, {"id": b"\xff\xfe", "p": "1", "a": "0", "t": now}).decode()
    [fine] = queue.submit_many(["fine"])
    assert queue.result(fine, timeout=10).result == "fine"
    wait_until(lambda: queue.stats().dead_letter == 3, timeout=10, what="three dead letters")
    dead = {d.id: d for d in queue.dead_letters()}
    assert dead["latin-1"].error == (
        "payload is not valid UTF-8 (byte 0xe9 at position 13): invalid continuation byte"
    )
    assert dead["latin-1"].payload == '{"name": "caf\\xe9"}'
    kept = {f[b"id"]: f[b"p"] for _, f in raw.xrange(PoolKeys("it", queue.pool).dead)}
    assert kept[b"latin-1"] == b'{"name": "caf\xe9"}'  # the bytes as they were written
    assert dead["nested"].error == "payload is nested too deeply to decode"
    assert dead[bad_id].error == (
        f"queue entry {bad_id}: its id b'\\xff\\xfe' is not valid UTF-8; the entry id stands for it"
    )
    assert worker.alive()
    stats = queue.stats()
    assert (stats.succeeded, stats.dead_lettered, stats.backlog) == (1, 3, 0)


def test_jobs_written_before_the_consumer_group_exists_are_run(
    queue, spawn_worker, redis_server, metrics_port
):
    raw = redis_sync.Redis.from_url(redis_server.url)
    raw.xadd(
        PoolKeys("it", queue.pool).stream,
        {"id": "early", "p": '"first"', "a": "0", "t": str(int(time.time() * 1000))},
    )
    [submitted] = queue.submit_many(["second"])
    assert queue.stats().waiting == 2
    spawn_worker(handler="tests.integration.handlers:echo", metrics_port=metrics_port)
    assert queue.result("early", timeout=10).result == {"echo": "first"}
    assert queue.result(submitted, timeout=10).result == {"echo": "second"}
    health = json.loads(wait_until(lambda: _get(f"http://127.0.0.1:{metrics_port}/healthz"), what="/healthz"))
    assert (health["status"], health["queueReachable"]) == ("ok", True)


@pytest.mark.parametrize("do,error", [("abort", "Abort"), ("exit", "raised SystemExit")])
def test_an_unexpected_error_makes_the_worker_unhealthy_and_exit_non_zero(
    queue, spawn_worker, metrics_port, do, error
):
    worker = spawn_worker(
        handler=SCRIPTED,
        concurrency=2,
        metrics_port=metrics_port,
        visibility_timeout=1,
        heartbeat_interval=0.2,
    )
    [lingering] = queue.submit_many([{"do": "ignore_cancel", "seconds": 3}])
    wait_until(lambda: queue.stats().in_flight == 1, what="the lingering job to start")
    [aborting] = queue.submit_many([{"do": do}])
    # the lingering handler keeps the failed worker up for a moment: long enough to see it
    code, health = wait_until(
        lambda: (answer := _healthz(metrics_port)) and answer[1]["status"] == "failed" and answer,
        timeout=10,
        what="/healthz to turn unhealthy",
    )
    assert code == 503 and error in health["error"]
    assert worker.wait(timeout=15) == 4
    # its jobs are left to the visibility timeout, so each redelivery counts an attempt
    successor = spawn_worker(handler=SCRIPTED, visibility_timeout=1, heartbeat_interval=0.2, max_attempts=1)
    wait_until(lambda: queue.stats().dead_letter == 2, timeout=30, what="two dead letters")
    dead = {d.id: d for d in queue.dead_letters()}
    assert dead[aborting].error.startswith("delivered 2 times without finishing")
    assert dead[lingering].error.startswith("delivered 2 times without finishing")
    assert successor.alive()


def _healthz(port: int) -> tuple[int, dict] | None:
    """(HTTP status, report) of the worker's /healthz; None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None


def draining(port: int) -> bool:
    answer = _healthz(port)
    return bool(answer and answer[1]["stopping"])


def queue_reachable(port: int) -> bool | None:
    """What the worker's /healthz says of its queue; None while it does not answer."""
    answer = _healthz(port)
    return answer[1]["queueReachable"] if answer else None
