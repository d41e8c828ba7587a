"""The autoscaler policy, as examples and as properties (hypothesis)."""

from hypothesis import given, settings, strategies as st

from jobpool.api import AutoscalingSpec
from jobpool.controller.autoscaler import decide_replicas, demanded_replicas


def policy(**kw):
    return AutoscalingSpec.model_validate({"enabled": True, **kw})


def decide(backlog, current, p, since=None, now=100.0, in_flight=0, concurrency=1):
    return decide_replicas(
        backlog=backlog,
        in_flight=in_flight,
        current=current,
        policy=p,
        concurrency=concurrency,
        lower_demand_since=since,
        now=now,
    )


def test_scale_up_at_once():
    d = decide(backlog=40, current=1, p=policy(maxWorkers=10, targetBacklogPerWorker=4))
    assert d.replicas == 10 and d.lower_demand_since is None


def test_target_defaults_to_concurrency():
    assert demanded_replicas(16, 0, policy(), concurrency=4) == 4


def test_from_zero_as_soon_as_one_job_waits():
    assert decide(backlog=1, current=0, p=policy(minWorkers=0)).replicas == 1


def test_scale_down_waits_for_delay():
    p = policy(scaleDownDelaySeconds=30)
    first = decide(backlog=0, current=3, p=p, now=100.0)
    assert first.replicas == 3 and first.lower_demand_since == 100.0
    still = decide(backlog=0, current=3, p=p, since=first.lower_demand_since, now=129.9)
    assert still.replicas == 3
    done = decide(backlog=0, current=3, p=p, since=first.lower_demand_since, now=130.0)
    assert done.replicas == 0 and done.lower_demand_since is None


def test_demand_coming_back_resets_the_delay():
    p = policy(scaleDownDelaySeconds=30)
    d = decide(backlog=3, current=3, p=p, since=100.0, now=120.0)
    assert d.replicas == 3 and d.lower_demand_since is None


def test_never_to_zero_with_work_in_flight():
    assert (
        decide(backlog=1, in_flight=1, current=2, p=policy(scaleDownDelaySeconds=0), concurrency=8).replicas
        == 1
    )


def test_bounds_are_restored_at_once():
    assert decide(backlog=0, current=20, p=policy(maxWorkers=5)).replicas == 5
    assert decide(backlog=0, current=0, p=policy(minWorkers=2, maxWorkers=5)).replicas == 2


policies = st.builds(
    lambda lo, span, target, delay: AutoscalingSpec(
        enabled=True,
        min_workers=lo,
        max_workers=max(lo + span, 1),
        target_backlog_per_worker=target,
        scale_down_delay_seconds=delay,
    ),
    st.integers(0, 20),
    st.integers(0, 20),
    st.one_of(st.none(), st.integers(1, 50)),
    st.integers(0, 120),
)
demand = st.tuples(st.integers(0, 2000), st.integers(0, 200))  # (waiting+delayed, in flight)


@settings(max_examples=300, deadline=None)
@given(
    p=policies,
    concurrency=st.integers(1, 64),
    start=st.integers(0, 40),
    steps=st.lists(st.tuples(demand, st.floats(0.0, 20.0)), min_size=1, max_size=60),
)
def test_replicas_stay_in_bounds_never_flap_and_keep_in_flight_work(p, concurrency, start, steps):
    current, since, now = start, None, 0.0
    last_scale_down = None
    for (queued, in_flight), dt in steps:
        now += dt
        d = decide_replicas(
            backlog=queued + in_flight,
            in_flight=in_flight,
            current=current,
            policy=p,
            concurrency=concurrency,
            lower_demand_since=since,
            now=now,
        )
        assert p.min_workers <= d.replicas <= p.max_workers
        if in_flight > 0:
            assert d.replicas >= 1
        in_bounds = p.min_workers <= current <= p.max_workers
        if d.replicas < current and in_bounds:
            # A scale-down only after demand stayed lower for the whole delay ...
            lower_since = now if since is None else since
            assert now - lower_since >= p.scale_down_delay_seconds
            # ... so two scale-downs are never closer than the delay.
            if last_scale_down is not None:
                assert now - last_scale_down >= p.scale_down_delay_seconds
            last_scale_down = now
        if d.replicas > current:
            assert d.replicas <= max(
                demanded_replicas(queued + in_flight, in_flight, p, concurrency), p.min_workers
            )
        current, since = d.replicas, d.lower_demand_since


def test_max_workers_is_max_workers_when_autoscaling_else_parallelism():
    from jobpool.api import JobPoolSpec
    from jobpool.controller.autoscaler import max_workers

    worker = {"image": "x", "handler": "m:f"}
    assert max_workers(JobPoolSpec.model_validate({"worker": worker, "parallelism": 3})) == 3
    assert (
        max_workers(
            JobPoolSpec.model_validate(
                {"worker": worker, "parallelism": 3, "autoscaling": {"enabled": True, "maxWorkers": 7}}
            )
        )
        == 7
    )
