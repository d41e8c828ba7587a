"""The finalizer's policy: delete the queue keys only once no worker is left, within a bound."""

from hypothesis import given, strategies as st

from jobpool.api import JobPoolSpec
from jobpool.controller.cleanup import (
    CleanupObservation,
    decide_cleanup,
    give_up_on_queue,
    keys_left_behind,
    wait_limit,
)


def spec(drain_seconds=60, env=()):
    return JobPoolSpec.model_validate(
        {"worker": {"image": "a", "handler": "m:f", "env": list(env)}, "drainSeconds": drain_seconds}
    )


def test_keys_are_deleted_at_once_when_no_worker_is_left():
    decision = decide_cleanup(CleanupObservation((), (), waited=0.0, limit=wait_limit(spec(60))))
    assert decision.delete_keys and not decision.gave_up


def test_a_registered_worker_that_is_not_a_pod_is_waited_for_and_named():
    decision = decide_cleanup(CleanupObservation((), ("laptop-42",), waited=3.0, limit=wait_limit(spec(60))))
    assert not decision.delete_keys
    assert "1 registered worker(s) (laptop-42)" in decision.message and "up to 95s" in decision.message


def test_worker_pods_are_waited_for_even_when_the_queue_is_unreadable():
    decision = decide_cleanup(
        CleanupObservation(("p-workers-abc",), None, waited=1.0, limit=wait_limit(spec(10)))
    )
    assert not decision.delete_keys and "1 worker pod(s) (p-workers-abc)" in decision.message
    assert decide_cleanup(CleanupObservation((), None, waited=1.0, limit=wait_limit(spec(10)))).delete_keys


def test_a_stuck_worker_delays_deletion_only_until_drain_seconds_plus_registration_expiry():
    stuck = CleanupObservation(
        ("p-workers-abc",), ("p-workers-abc",), waited=wait_limit(spec(10)), limit=wait_limit(spec(10))
    )
    decision = decide_cleanup(stuck)
    assert decision.delete_keys and decision.gave_up and "gave up after 45s" in decision.message


@given(
    pods=st.lists(st.text(min_size=1, max_size=8), max_size=3),
    workers=st.none() | st.lists(st.text(min_size=1, max_size=8), max_size=3),
    waited=st.floats(min_value=0, max_value=10_000),
    drain=st.integers(min_value=0, max_value=86400),
)
def test_keys_go_only_when_nothing_is_left_or_the_wait_is_over(pods, workers, waited, drain):
    limit = wait_limit(spec(drain))
    observation = CleanupObservation(tuple(pods), None if workers is None else tuple(workers), waited, limit)
    decision = decide_cleanup(observation)
    nothing_left = not pods and not workers
    assert decision.delete_keys == (nothing_left or waited >= limit)
    assert decision.gave_up == (decision.delete_keys and not nothing_left)


def test_an_unreachable_queue_is_given_up_sooner_than_one_that_had_a_blip():
    assert give_up_on_queue(30.0, spec(60), reachable=False)
    assert not give_up_on_queue(29.0, spec(60), reachable=False)
    assert not give_up_on_queue(30.0, spec(60), reachable=True)
    assert give_up_on_queue(wait_limit(spec(60)) + 30, spec(60), reachable=True)


def test_the_wait_covers_a_visibility_timeout_set_in_the_worker_env():
    # A killed worker's registration expires one visibility timeout after its last heartbeat.
    assert wait_limit(spec(10)) == 10 + 30 + 5
    longer = spec(10, [{"name": "JOBPOOL_VISIBILITY_TIMEOUT", "value": "120"}])
    assert wait_limit(longer) == 10 + 120 + 5
    registered = decide_cleanup(
        CleanupObservation((), ("p-workers-killed",), waited=60.0, limit=wait_limit(longer))
    )
    assert not registered.delete_keys, "the keys went while a killed worker's registration was still live"
    shorter = spec(10, [{"name": "JOBPOOL_VISIBILITY_TIMEOUT", "value": "6"}])
    assert wait_limit(shorter) == 10 + 6 + 5
    unknown = spec(
        10,
        [{"name": "JOBPOOL_VISIBILITY_TIMEOUT", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}],
    )
    assert wait_limit(unknown) == 10 + 30 + 5


def test_keys_left_behind_says_which_and_what_to_do():
    message = keys_left_behind(
        "media", "thumbs", 'spec.queue.urlSecretRef: Secret "q" not found in namespace "media"'
    )
    assert message.startswith(
        'queue keys of media/thumbs not deleted: spec.queue.urlSecretRef: Secret "q" not'
    )
    assert "{jobpool:media/thumbs}" in message and "by hand before re-creating the pool" in message
