"""Pure parts of the queue: ids, payload encoding, key names and the retry policy."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from jobpool.queue import QueueError, QueueStats, WorkerInfo
from jobpool.queue.codec import (
    RawJSON,
    check_job_id,
    encode_json,
    encode_result,
    new_job_ids,
    outcome_of_failure,
    payload_size,
    retry_delay,
    storable_text,
)
from jobpool.queue.keys import PoolKeys
from jobpool.queue.redis.entries import job_from_entry


@given(
    attempt=st.integers(1, 200),
    backoff=st.floats(0, 100),
    max_backoff=st.floats(0, 1000),
    rand=st.floats(0, 1),
)
def test_retry_delay_doubles_is_capped_and_jittered_into_the_upper_half(attempt, backoff, max_backoff, rand):
    ceiling = min(max_backoff, backoff * 2 ** (attempt - 1))
    delay = retry_delay(attempt, backoff, max_backoff, rand)
    assert ceiling / 2 - 1e-9 <= delay <= ceiling + 1e-9


def test_retry_delay_doubles_per_attempt():
    assert [retry_delay(n, 1, 300, rand=1.0) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert retry_delay(20, 1, 300, rand=1.0) == 300


def test_failure_outcome_is_dead_letter_at_max_attempts():
    assert [outcome_of_failure(n, 3) for n in (1, 2, 3, 4)] == [
        "retried",
        "retried",
        "dead_lettered",
        "dead_lettered",
    ]


def test_generated_ids_are_unique_across_batches():
    ids = new_job_ids(1000) + new_job_ids(1000)
    assert len(set(ids)) == 2000


@pytest.mark.parametrize(
    "bad, message",
    [
        ("", "non-empty"),
        (None, "non-empty"),
        (7, "non-empty"),
        ("x" * 257, "longer than 256"),
        ("a\nb", "non-printable"),
    ],
)
def test_bad_ids_are_refused_naming_the_job(bad, message):
    with pytest.raises(QueueError, match=f"job 4: .*{message}"):
        check_job_id(bad, 4)


def test_payloads_are_compact_json_and_raw_json_passes_through():
    assert encode_json({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert encode_json(RawJSON('{"x": 1}')) == '{"x": 1}'
    with pytest.raises(QueueError, match="payload is not JSON-serializable"):
        encode_json(object())
    with pytest.raises(QueueError):
        encode_json(float("nan"))


def test_every_key_of_a_pool_carries_its_hash_tag():
    keys = PoolKeys("media", "thumbnails")
    names = [
        keys.stream,
        keys.live,
        keys.delayed,
        keys.delayed_jobs,
        keys.dead,
        keys.dead_ids,
        keys.results,
        keys.result("j1"),
        keys.counters,
        keys.config,
        keys.workers,
        keys.reclaim_gate,
        keys.reclaim_cursor,
    ]
    assert all(n.startswith("{jobpool:media/thumbnails}:") for n in names)
    assert len(set(names)) == len(names)
    assert PoolKeys("a", "p[1]").scan_pattern == "{jobpool:a/p\\[1\\]}:*"


def test_stats_derive_slots_saturation_and_backlog():
    stats = QueueStats(
        waiting=5,
        in_flight=3,
        delayed=2,
        delayed_due=2,
        workers=(WorkerInfo("a", 4, 3, 0.0), WorkerInfo("b", 4, 0, 0.0)),
    )
    assert (stats.busy_slots, stats.total_slots, stats.saturation, stats.backlog) == (3, 8, 0.375, 10)
    assert QueueStats().saturation == 0.0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_encoded_payloads_never_contain_the_nul_that_separates_jobs_in_a_batch(value):
    assert "\0" not in encode_json(value)


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())))
def test_results_with_lone_surrogates_encode_to_utf8_json_that_decodes_as_json_does(text):
    encoded = encode_result({"name": text})
    encoded.encode("utf-8")  # storable as it is
    assert json.loads(encoded) == json.loads(json.dumps({"name": text}))


def test_error_texts_show_lone_surrogates_as_escapes():
    assert storable_text("scan-\udcff.png: é") == "scan-\\udcff.png: é"


def entry(**fields: bytes) -> list[bytes]:
    return [x for name, value in fields.items() for x in (name.encode(), value)]


def test_an_entry_becomes_the_job_of_the_worker_that_fetched_it():
    job = job_from_entry(b"1-0", entry(id=b"j", p=b'{"a": 1}', a=b"2", t=b"1500", r=b"1"), 1, "w1")
    assert (
        job.id,
        job.payload,
        job.attempts,
        job.enqueued_at,
        job.token,
        job.consumer,
        job.replayed,
        job.payload_error,
    ) == ("j", {"a": 1}, 3, 1.5, "1-0", "w1", True, None)


@pytest.mark.parametrize(
    "fields,error",
    [
        (
            entry(id=b"j", p=b'"caf\xe9"'),
            "payload is not valid UTF-8 (byte 0xe9 at position 4): invalid continuation byte",
        ),
        (entry(id=b"j", p=b"[" * 100_000 + b"]" * 100_000), "payload is nested too deeply to decode"),
        (
            entry(id=b"j", p=b"{not json"),
            "payload is not valid JSON: Expecting property name enclosed in double quotes: line 1 "
            "column 2 (char 1)",
        ),
        (entry(id=b"j"), "the queue entry has no payload field 'p'"),
        (
            entry(id=b"\xff", p=b"1"),
            "queue entry 1-0: its id b'\\xff' is not valid UTF-8; the entry id stands for it",
        ),
    ],
)
def test_an_entry_that_cannot_be_run_becomes_a_job_that_says_why(fields, error):
    job = job_from_entry(b"1-0", fields, 1, "w1")
    assert job.payload_error == error
    assert job.payload is None or job.id == "1-0"


def test_payload_bytes_that_are_not_utf8_travel_on_unchanged():
    job = job_from_entry(b"1-0", entry(id=b"j", p=b'"caf\xe9"', a=b"\xff"), 1, "w1")
    assert job.payload_text.encode("utf-8", "surrogateescape") == b'"caf\xe9"'
    assert job.attempts == 1


@pytest.mark.parametrize("text", ["x" * 10, "é" * 10, "💥" * 3, ""])
def test_payload_size_counts_utf8_bytes(text):
    assert payload_size(text) == len(text.encode())


@given(
    timeout=st.none() | st.sampled_from([0.5, 30.0, 3600.0]),
    max_attempts=st.none() | st.integers(1, 100),
    backoff=st.none() | st.sampled_from([0.0, 0.25, 60.0]),
    priority=st.none() | st.integers(0, 9),
    fairness_key=st.none() | st.from_regex(r"\A[A-Za-z0-9._-]{1,64}\Z"),
)
def test_a_jobs_options_with_its_priority_and_fairness_key_read_back_as_given(
    timeout, max_attempts, backoff, priority, fairness_key
):
    from jobpool.queue.codec import check_options, decode_options, encode_options

    options = check_options(timeout, max_attempts, backoff, priority=priority, fairness_key=fairness_key)
    text = encode_options(options)
    assert decode_options(text) == options
    assert ":" not in text  # the delayed set's packing separates fields with ':'
    assert (text.count(",") == 4) == bool(priority or fairness_key)


@pytest.mark.parametrize(
    "given_options, problem",
    [
        (dict(priority=True), "job 3: priority must be an integer from 0 to 9"),
        (dict(priority=1.0), "job 3: priority must be an integer from 0 to 9"),
        (dict(fairness_key="tenant a"), "job 3: fairness_key 'tenant a' is not a fairness key"),
        (dict(fairness_key="a,b"), "fairness_key 'a,b' is not a fairness key"),
        (dict(fairness_key=7), "fairness_key 7 is not a fairness key"),
    ],
)
def test_a_bad_priority_or_fairness_key_names_the_job_and_the_field(given_options, problem):
    from jobpool.queue.codec import check_options

    with pytest.raises(QueueError, match=problem):
        check_options(index=3, **given_options)
