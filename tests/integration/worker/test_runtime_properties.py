"""Property: whatever a handler returns or raises and whatever a producer writes into the
stream, every job ends succeeded or dead-lettered, none stays stuck, and the worker serves on.
One real worker process and the session redis serve all examples."""

from __future__ import annotations

import itertools
import json
import time

import pytest
import redis as redis_sync
from hypothesis import HealthCheck, given, settings, strategies as st

from jobpool.queue import JobOptions
from jobpool.queue.codec import storable_text
from jobpool.queue.keys import PoolKeys
from tests.helpers import wait_until

SCRIPTED = "tests.integration.handlers:scripted"

# code points, lone surrogates and their halves of pairs included: text no producer could
# submit as JSON, but that handlers make (os.fsdecode) and return or raise
code_points = st.lists(
    st.one_of(
        st.integers(0, 0x10FFFF),
        st.integers(0xD800, 0xDFFF),
        st.sampled_from([0, 0x0A, 0x2028, 0xFEFF, 0xFFFF]),
    ),
    max_size=24,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
recipes = st.one_of(
    st.builds(lambda t: {"do": "return", "text": t}, code_points),
    st.builds(lambda t: {"do": "raise", "text": t}, code_points),
    st.builds(lambda t: {"do": "fail", "text": t}, code_points),
    st.builds(
        lambda t, n: {"do": "return_huge", "text": t, "size": n}, code_points, st.sampled_from([0, 2_000_000])
    ),
    st.builds(lambda d: {"do": "return_nested", "depth": d}, st.sampled_from([3, 400, 5_000, 100_000])),
    st.sampled_from([{"do": "raise_unprintable"}, {"do": "return_unserializable"}, {"do": "return_nan"}]),
    json_values.map(lambda value: [value]),
)  # a list: echoed as it is
# a priority and a fairness key, or neither (then the job waits in the stream, as foreign entries do)
levels = st.builds(
    lambda priority, key: JobOptions(priority=priority, fairness_key=key),
    st.none() | st.integers(0, 9),
    st.none() | st.sampled_from(["a", "b", "tenant.c"]),
)
foreign_payloads = st.one_of(
    st.binary(max_size=32),
    json_values.map(lambda value: json.dumps([value]).encode()),
    st.integers(500, 200_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.just(b'{"name": "caf\xe9"}'),
)
foreign_entries = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.one_of(st.none(), st.binary(max_size=8)),
            "p": st.one_of(st.none(), foreign_payloads),
            "a": st.sampled_from([b"0", b"2", b"99", b"x", b"\xff"]),
        }
    ),
    max_size=4,
)


def text_of(points: list[int]) -> str:
    return "".join(map(chr, points))


def round_trip(value):
    """What a JSON client reads back: a surrogate pair given as two code points is one."""
    return json.loads(json.dumps(value))


def expected_outcome(payload) -> tuple[str, object]:
    """("succeeded", result) or ("dead_lettered", a check of the error)."""
    if isinstance(payload, list):
        return "succeeded", payload
    do, text = payload["do"], text_of(payload.get("text", []))
    if do == "return":
        return "succeeded", round_trip({"text": text, "also": [text]})
    if do == "return_huge":
        return "succeeded", round_trip(text + "x" * payload["size"])
    if do == "return_nested" and payload["depth"] < 500:
        nested: list = []
        for _ in range(payload["depth"]):
            nested = [nested]
        return "succeeded", nested
    if do == "raise":
        headline = storable_text(f"ValueError: {text}".strip() if text else "ValueError")
        return "dead_lettered", lambda error: error.startswith(headline)
    if do == "fail":
        return "dead_lettered", lambda error: error == storable_text(text)
    needle = {
        "return_nested": "RecursionError",
        "raise_unprintable": "UnprintableError",
        "return_unserializable": "result is not JSON-serializable",
        "return_nan": "result is not JSON-serializable",
    }[do]
    return "dead_lettered", lambda error: needle in error


@pytest.fixture
def worker(spawn_worker):
    return spawn_worker(handler=SCRIPTED, concurrency=4, max_attempts=1, visibility_timeout=5)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(jobs=st.lists(st.tuples(recipes, levels), min_size=1, max_size=6), foreign=foreign_entries)
def test_every_job_ends_succeeded_or_dead_lettered_and_the_worker_serves_on(
    queue, worker, redis_server, jobs, foreign
):
    raw = redis_sync.Redis.from_url(redis_server.url)
    stream = PoolKeys("it", queue.pool).stream
    before = queue.stats()
    payloads = [payload for payload, _ in jobs]
    ids = queue.submit_many(payloads, options=[options for _, options in jobs])
    for entry in foreign:
        fields = {"a": entry["a"], "t": str(int(time.time() * 1000))}
        if entry["id"] is not None:  # made unique, as a foreign producer's ids would be
            fields["id"] = b"foreign-%d-" % next(UNIQUE) + entry["id"]
        if entry["p"] is not None:
            fields["p"] = entry["p"]
        raw.xadd(stream, fields)
    total = len(payloads) + len(foreign)

    def all_finished() -> bool:
        stats = queue.stats()
        return (
            stats.succeeded + stats.dead_lettered == before.succeeded + before.dead_lettered + total
            and stats.backlog == 0
        )

    wait_until(all_finished, timeout=30, interval=0.05, what=f"{total} jobs to succeed or be dead-lettered")
    dead = {d.id: d for d in queue.dead_letters()}
    for job_id, payload in zip(ids, payloads):
        outcome, check = expected_outcome(payload)
        if outcome == "succeeded":
            assert job_id not in dead, dead.get(job_id)
            assert queue.result(job_id).result == check
        else:
            assert queue.result(job_id) is None
            assert check(dead[job_id].error), (payload, dead[job_id].error[:300])
    assert worker.alive()
    stats = queue.stats()
    assert (stats.duplicates, stats.in_flight, stats.delayed) == (0, 0, 0)


UNIQUE = itertools.count()


# per-job options (README "Per-job options") and delays (README "Run at / delay"), with a worker
# whose pool allows one attempt: a job's own max_attempts and backoff decide its retries
job_plans = st.lists(
    st.fixed_dictionaries(
        {
            "recipe": st.sampled_from(
                [
                    {"do": "return", "text": [0x41]},
                    {"do": "raise", "text": [0x42]},
                    {"do": "fail", "text": []},
                    [1, "echo"],
                ]
            ),
            "max_attempts": st.sampled_from([None, 1, 2, 3]),
            "backoff": st.sampled_from([None, 0.0, 0.05]),
            "timeout": st.sampled_from([None, 30.0]),
            "delay_ms": st.sampled_from([0, 0, 150, 600]),
        }
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plans=job_plans)
def test_each_job_runs_no_sooner_than_its_delay_and_as_often_as_its_own_options_say(
    queue, worker, redis_server, plans
):
    from jobpool.queue.base import JobOptions
    from jobpool.queue.codec import due_of

    raw = redis_sync.Redis.from_url(redis_server.url)
    keys = PoolKeys("it", queue.pool)
    seconds, micros = raw.time()
    submitted_ms = seconds * 1000 + micros // 1000
    before = queue.stats()
    ids = queue.submit_many(
        [plan["recipe"] for plan in plans],
        options=[
            JobOptions(timeout=p["timeout"], max_attempts=p["max_attempts"], backoff=p["backoff"])
            for p in plans
        ],
        due=[due_of(delay=p["delay_ms"] / 1000) for p in plans],
    )

    def all_finished() -> bool:
        stats = queue.stats()
        return (
            stats.succeeded + stats.dead_lettered == before.succeeded + before.dead_lettered + len(plans)
            and stats.backlog == 0
            and stats.scheduled == 0
            and stats.delayed == 0
        )

    wait_until(
        all_finished, timeout=30, interval=0.05, what=f"{len(plans)} jobs to succeed or be dead-lettered"
    )
    finished_at = {
        fields[b"id"].decode(): int(entry_id.split(b"-")[0]) for entry_id, fields in raw.xrange(keys.results)
    }
    dead = {d.id: d for d in queue.dead_letters()}
    retries = 0
    for job_id, plan in zip(ids, plans):
        outcome, check = expected_outcome(plan["recipe"])
        attempts = plan["max_attempts"] or 1
        if outcome == "succeeded":
            result = queue.result(job_id)
            assert (result.result, result.attempts) == (check, 1)
            assert finished_at[job_id] >= submitted_ms + plan["delay_ms"], (
                plan,
                finished_at[job_id] - submitted_ms,
            )
        else:
            assert check(dead[job_id].error) and dead[job_id].attempts == attempts, (plan, dead[job_id])
            assert dead[job_id].failed_at * 1000 >= submitted_ms + plan["delay_ms"]
            retries += attempts - 1
    stats = queue.stats()
    assert stats.retried - before.retried == retries
    assert (stats.duplicates, stats.in_flight) == (0, 0)
    raw.close()
