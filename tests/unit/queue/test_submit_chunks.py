"""Where a submit is cut into function calls: SUBMIT_CHUNK jobs or SUBMIT_CHUNK_CHARACTERS of
payloads (a Redis bulk string each, held in the producer's client buffer), at least one job."""

import itertools

from hypothesis import given, strategies as st

from jobpool.queue.redis.submit import SUBMIT_CHUNK, SUBMIT_CHUNK_CHARACTERS, chunk_end


def ends(sizes):
    return list(itertools.accumulate(sizes, initial=0))


def test_small_payloads_go_a_thousand_at_a_time():
    assert chunk_end(ends([10] * 2500), 0) == SUBMIT_CHUNK
    assert chunk_end(ends([10] * 2500), 2000) == 2500


def test_large_payloads_go_up_to_the_characters_and_one_larger_alone():
    half = SUBMIT_CHUNK_CHARACTERS // 2
    assert chunk_end(ends([half] * 5), 0) == 2
    assert chunk_end(ends([1, SUBMIT_CHUNK_CHARACTERS * 3, 1]), 1) == 2


@given(st.lists(st.integers(0, SUBMIT_CHUNK_CHARACTERS * 2), min_size=1, max_size=50), st.data())
def test_every_chunk_holds_a_job_and_stays_within_both_bounds(sizes, data):
    start = data.draw(st.integers(0, len(sizes) - 1))
    end = chunk_end(ends(sizes), start)
    assert start < end <= min(len(sizes), start + SUBMIT_CHUNK)
    assert end == start + 1 or sum(sizes[start:end]) <= SUBMIT_CHUNK_CHARACTERS
