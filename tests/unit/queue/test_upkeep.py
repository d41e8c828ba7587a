"""The pure decisions of the operator's pass over a pool's keys (jobpool.queue.upkeep)."""

from hypothesis import given, strategies as st

from jobpool.queue import upkeep

ids = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))


@given(ids, ids)
def test_stream_ids_order_as_redis_orders_them(a, b):
    assert upkeep.id_after(f"{a[0]}-{a[1]}", f"{b[0]}-{b[1]}") == (a > b)


def test_an_id_far_ahead_of_the_clock_is_one_the_queue_never_makes():
    now = 1_760_000_000_000
    assert upkeep.forged_top("18446744073709551615-18446744073709551615", now)
    assert upkeep.forged_top(f"{now + upkeep.FUTURE_ID_MS + 1}-0", now)
    assert not upkeep.forged_top(f"{now + 5_000}-3", now)  # a clock a little behind another's
    assert not upkeep.forged_top("0-1", now)


def test_only_structures_over_their_bound_are_named():
    assert upkeep.oversized(upkeep.MAX_WORKERS, upkeep.MAX_COUNTERS, upkeep.MAX_CONSUMERS) == []
    found = upkeep.oversized(upkeep.MAX_WORKERS + 1, 0, upkeep.MAX_CONSUMERS + 1)
    assert len(found) == 2 and "worker registry" in found[0] and "consumer group" in found[1]
