"""The finalizer's policy: delete the queue keys only once no worker is left, within a bound."""
from hypothesis import given, strategies as st

from jobpool.controller.cleanup import (CleanupObservation, decide_cleanup, give_up_on_queue, keys_left_behind,
                                        wait_limit)


def test_keys_are_deleted_at_once_when_no_worker_is_left():
    decision = decide_cleanup(CleanupObservation((), (), waited=0.0, drain_seconds=60))
    assert decision.delete_keys and not decision.gave_up


def test_a_registered_worker_that_is_not_a_pod_is_waited_for_and_named():
    decision = decide_cleanup(CleanupObservation((), ("laptop-42",), waited=3.0, drain_seconds=60))
    assert not decision.delete_keys
    assert "1 registered worker(s) (laptop-42)" in decision.message and "up to 95s" in decision.message


def test_worker_pods_are_waited_for_even_when_the_queue_is_unreadable():
    decision = decide_cleanup(CleanupObservation(("p-workers-abc",), None, waited=1.0, drain_seconds=10))
    assert not decision.delete_keys and "1 worker pod(s) (p-workers-abc)" in decision.message
    assert decide_cleanup(CleanupObservation((), None, waited=1.0, drain_seconds=10)).delete_keys


def test_a_stuck_worker_delays_deletion_only_until_drain_seconds_plus_registration_expiry():
    stuck = CleanupObservation(("p-workers-abc",), ("p-workers-abc",), waited=wait_limit(10), drain_seconds=10)
    decision = decide_cleanup(stuck)
    assert decision.delete_keys and decision.gave_up and "gave up after 45s" in decision.message


@given(pods=st.lists(st.text(min_size=1, max_size=8), max_size=3),
       workers=st.none() | st.lists(st.text(min_size=1, max_size=8), max_size=3),
       waited=st.floats(min_value=0, max_value=10_000), drain=st.integers(min_value=0, max_value=86400))
def test_keys_go_only_when_nothing_is_left_or_the_wait_is_over(pods, workers, waited, drain):
    observation = CleanupObservation(tuple(pods), None if workers is None else tuple(workers), waited, drain)
    decision = decide_cleanup(observation)
    nothing_left = not pods and not workers
    assert decision.delete_keys == (nothing_left or waited >= wait_limit(drain))
    assert decision.gave_up == (decision.delete_keys and not nothing_left)


def test_an_unreachable_queue_is_given_up_sooner_than_one_that_had_a_blip():
    assert give_up_on_queue(30.0, 60, reachable=False)
    assert not give_up_on_queue(29.0, 60, reachable=False)
    assert not give_up_on_queue(30.0, 60, reachable=True) and give_up_on_queue(wait_limit(60) + 30, 60, reachable=True)


def test_keys_left_behind_says_which_and_what_to_do():
    message = keys_left_behind("media", "thumbs", 'spec.queue.urlSecretRef: Secret "q" not found in namespace "media"')
    assert message.startswith('queue keys of media/thumbs not deleted: spec.queue.urlSecretRef: Secret "q" not')
    assert "{jobpool:media/thumbs}" in message and "by hand before re-creating the pool" in message
