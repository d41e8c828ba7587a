"""The reconcile decision, `plan(Gathered) -> Plan`, as properties (hypothesis): no cluster, queue
or clock, only the one frozen input the loop gathers and the memory one tick hands the next."""

import dataclasses
import itertools
import json

from hypothesis import assume, given, settings, strategies as st

from jobpool.contract import LABEL_POOL
from jobpool.controller import builders, kinds, reasons
from jobpool.controller.credentials import (
    Credentials,
    CredentialsRead,
    digest as credential_digest,
    plan_writes,
)
from jobpool.controller.plan import (
    Action,
    Batch,
    Gathered,
    Memory,
    Settings,
    batch_digest,
    next_memory,
    plan,
    queue_settings,
)
from jobpool.controller.problems import Problem, validate_spec
from jobpool.queue import acl
from jobpool.queue.base import QueueStats, WorkerInfo
from tests.unit.factories import WORKER, spec

POOL = builders.PoolRef(name="p", namespace="ns", uid="u")
QUEUE = "redis://q:6379/0"


def gathered(pool_spec=None, **kw) -> Gathered:
    base = dict(
        pool=POOL,
        generation=1,
        spec=pool_spec or spec(),
        stats=QueueStats(),
        queue_moved=False,
        feeder_progress=None,
        managed=False,
        credentials=None,
        observed={kind.kind: None for kind in kinds.WORKER_OBJECTS},
        pods={},
        stored_status={},
        now=1000.0,
        memory=Memory(),
        settings=Settings(QUEUE),
    )
    return Gathered(**{**base, **kw})


VERSIONS = itertools.count(1)


def as_observed(obj, ready=None):
    """What the watch delivers once an applied object is there (and its pods are ready)."""
    seen = json.loads(json.dumps(obj))
    seen["metadata"]["resourceVersion"] = str(next(VERSIONS))
    if obj["kind"] == "Deployment":
        replicas = obj["spec"]["replicas"]
        seen["status"] = {"replicas": replicas, "readyReplicas": replicas if ready is None else ready}
    return seen


def patched(pod, patch):
    """A pod after a merge patch of its annotations (None removes a key)."""
    annotations = {**(pod["metadata"].get("annotations") or {}), **patch}
    return {
        "metadata": {
            **pod["metadata"],
            "annotations": {k: v for k, v in annotations.items() if v is not None},
        }
    }


def settle(g: Gathered) -> Gathered:
    """The next tick's input after acting on `plan(g)`: applied objects observed, pods patched, status written."""
    decided = plan(g)
    observed = dict(g.observed)
    for obj in decided.apply:
        observed[obj["kind"]] = as_observed(obj)
    for kind in decided.delete:
        observed[kind.kind] = None
    pods = {name: patched(pod, decided.pod_patches.get(name, {})) for name, pod in g.pods.items()}
    return dataclasses.replace(g, observed=observed, pods=pods, memory=decided.memory, now=g.now + 0.5)


workers = st.lists(st.tuples(st.integers(1, 16), st.integers(0, 16)), max_size=5).map(
    lambda pairs: tuple(
        WorkerInfo(f"p-workers-{i}", slots, min(busy, slots), 0.0) for i, (slots, busy) in enumerate(pairs)
    )
)
stats = st.builds(
    QueueStats,
    waiting=st.integers(0, 10_000),
    in_flight=st.integers(0, 500),
    delayed=st.integers(0, 100),
    dead_letter=st.integers(0, 100),
    submitted=st.integers(0, 10**6),
    succeeded=st.integers(0, 10**6),
    workers=workers,
)
specs = st.builds(
    lambda parallelism, enabled, low, extra, concurrency: spec(
        parallelism=parallelism,
        concurrency=concurrency,
        autoscaling={"enabled": enabled, "minWorkers": low, "maxWorkers": max(1, low + extra)},
    ),
    st.integers(0, 20),
    st.booleans(),
    st.integers(0, 5),
    st.integers(0, 10),
    st.integers(1, 8),
)


def pods_of(ws):
    return {w.id: {"metadata": {"name": w.id, "namespace": "ns", "labels": {LABEL_POOL: "p"}}} for w in ws}


@settings(max_examples=200, deadline=None)
@given(pool_spec=specs, queue=stats)
def test_an_unchanged_pool_causes_no_write_on_the_next_tick(pool_spec, queue):
    g = gathered(pool_spec, stats=queue, pods=pods_of(queue.workers))
    first = settle(g)
    second = settle(first)  # a scale-up may need one more tick for its Deployment
    again = plan(second)
    assert again.apply == () and again.delete == () and dict(again.pod_patches) == {}
    assert again.status is None and again.events == ()


@settings(max_examples=200, deadline=None)
@given(pool_spec=specs, queue=stats, current=st.integers(0, 30))
def test_desired_replicas_stay_within_the_spec(pool_spec, queue, current):
    decided = plan(gathered(pool_spec, stats=queue, memory=Memory(decided=current)))
    if pool_spec.autoscaling.enabled:
        assert pool_spec.autoscaling.min_workers <= decided.desired <= pool_spec.autoscaling.max_workers
        assert (decided.scaled is not None) == (decided.desired != current)
    else:
        assert decided.desired == pool_spec.parallelism
    (deployment,) = [obj for obj in decided.apply if obj["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == decided.desired == decided.status["desiredReplicas"]


@settings(max_examples=100, deadline=None)
@given(
    raw=st.sampled_from(
        [
            {"worker": {"image": "a", "handler": "app tasks:f"}},
            {"worker": {"image": "a", "handler": "m:f"}, "concurrency": 0},
            {"worker": {"image": "a", "handler": "m:f", "command": ["x"]}},
        ]
    ),
    queue=stats,
)
def test_an_invalid_spec_applies_nothing_and_says_why(raw, queue):
    pool_spec, problem = validate_spec(raw, QUEUE, administered=False)
    assert pool_spec is None and problem.reason == reasons.INVALID_SPEC
    decided = plan(gathered(None, spec=None, spec_problem=problem, stats=None))
    assert decided.apply == () and decided.feed is None and dict(decided.pod_patches) == {}
    conditions = {c["type"]: c for c in decided.status["conditions"]}
    assert (
        conditions[reasons.READY]["status"] == "False"
        and conditions[reasons.READY]["reason"] == reasons.INVALID_SPEC
    )
    assert any(e.type == reasons.DEGRADED and e.warning for e in decided.events)


@settings(max_examples=100, deadline=None)
@given(pool_spec=specs, queue=stats, current=st.integers(0, 10))
def test_an_unreachable_queue_keeps_the_workers_and_the_last_counters(pool_spec, queue, current):
    assume(
        not pool_spec.autoscaling.enabled
        or pool_spec.autoscaling.min_workers <= current <= pool_spec.autoscaling.max_workers
    )
    before = settle(gathered(pool_spec, stats=queue, memory=Memory(decided=current)))
    down = Problem(reasons.QUEUE_UNAVAILABLE, "spec.queue: cannot reach the queue", spec_ok=True)
    decided = plan(dataclasses.replace(before, stats=None, stats_problem=down))
    assert decided.desired == before.memory.decided
    assert not any(obj["kind"] == "Deployment" for obj in decided.apply)
    assert decided.status["queue"] == before.memory.status["queue"]
    assert decided.status["saturation"] == before.memory.status["saturation"]


@settings(max_examples=100, deadline=None)
@given(count=st.integers(1, 10_000), fed=st.integers(0, 10_000), progress=st.integers(0, 10_000))
def test_a_batch_is_fed_forward_and_again_from_the_start_when_it_or_its_queue_changes(count, fed, progress):
    pool_spec = spec(jobs={"range": {"count": count}})
    digest = batch_digest(pool_spec)
    fed = min(fed, count)
    memory = Memory(batch=Batch(count, fed, digest))
    decided = plan(gathered(pool_spec, memory=memory, feeder_progress=min(progress, count)))
    assert decided.memory.batch.fed == max(fed, min(progress, count))
    assert (decided.feed is None) == (decided.memory.batch.fed >= count)
    assert plan(gathered(pool_spec, memory=memory, queue_moved=True)).memory.batch.fed == 0
    changed = spec(jobs={"range": {"count": count + 1}})
    assert plan(gathered(changed, memory=memory)).memory.batch == Batch(count + 1, 0, batch_digest(changed))
    assert plan(gathered(spec(), memory=memory)).memory.batch is None


@settings(max_examples=100, deadline=None)
@given(queue=stats, waited=st.floats(0.0, 0.99), more=st.integers(1, 1000))
def test_counter_changes_wait_for_the_interval_but_condition_changes_do_not(queue, waited, more):
    g = settle(settle(gathered(spec(), stats=queue)))  # the workers are up: only counters change
    busier = dataclasses.replace(queue, succeeded=queue.succeeded + more)
    written_at = g.memory.status_written_at
    assert plan(dataclasses.replace(g, stats=busier, now=written_at + waited)).status is None
    assert plan(dataclasses.replace(g, stats=busier, now=written_at + 1.0)).status is not None
    down = Problem(reasons.QUEUE_UNAVAILABLE, "spec.queue: cannot reach the queue", spec_ok=True)
    assert (
        plan(dataclasses.replace(g, stats=None, stats_problem=down, now=written_at + waited)).status
        is not None
    )


@settings(max_examples=200, deadline=None)
@given(before=workers, busy=st.lists(st.integers(0, 16), min_size=5, max_size=5))
def test_pods_are_patched_only_when_their_deletion_cost_tier_changes(before, busy):
    g = settle(gathered(spec(), stats=QueueStats(workers=before), pods=pods_of(before)))
    after = tuple(dataclasses.replace(w, busy=b) for w, b in zip(before, busy))
    decided = plan(dataclasses.replace(g, stats=QueueStats(workers=after)))
    tier = {w.id: builders.deletion_cost(w.busy) for w in before}
    changed = {w.id for w in after if builders.deletion_cost(w.busy) != tier[w.id]}
    assert set(decided.pod_patches) == changed


def test_a_managed_pool_starts_its_workers_once_its_secret_exists():
    waiting = plan(gathered(managed=True, credentials=None))
    assert waiting.apply == ()
    started = plan(gathered(managed=True, credentials="digest-1"))
    assert [obj["kind"] for obj in started.apply] == ["Deployment", "Service"]


@settings(max_examples=100, deadline=None)
@given(queue=stats)
def test_a_pool_is_idle_only_without_jobs_and_without_anything_to_do(queue):
    g = settle(settle(gathered(spec(), stats=queue, pods=pods_of(queue.workers))))
    decided = plan(g)
    assert decided.idle == (queue.backlog == 0 and queue.in_flight == 0)
    assert not plan(gathered(spec(), stats=QueueStats())).idle, "a pool with objects to apply is not idle"


@settings(max_examples=50, deadline=None)
@given(pool_spec=specs, image=st.sampled_from(["registry.example/other:2", "evil/miner:1"]))
def test_a_hand_edit_of_a_worker_object_is_put_back(pool_spec, image):
    g = settle(settle(gathered(pool_spec)))
    edited = json.loads(json.dumps(g.observed["Deployment"]))
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = image
    edited["metadata"]["resourceVersion"] = str(next(VERSIONS))
    decided = plan(dataclasses.replace(g, observed={**g.observed, "Deployment": edited}))
    (deployment,) = [obj for obj in decided.apply if obj["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == WORKER["image"]


def complete(decided_or_status):
    status = getattr(decided_or_status, "memory", None)
    conditions = (status.status if status is not None else decided_or_status)["conditions"]
    return next(c for c in conditions if c["type"] == reasons.COMPLETE)


@settings(max_examples=100, deadline=None)
@given(
    count=st.integers(1, 10_000),
    fed=st.integers(0, 10_000),
    progress=st.integers(0, 10_000),
    swept=st.integers(0, 10_000),
    running=st.integers(0, 5),
)
def test_a_cancelled_batch_is_never_fed_and_is_swept_forward_until_its_end(
    count, fed, progress, swept, running
):
    pool_spec = spec(jobs={"range": {"count": count}, "cancel": True})
    fed, swept = min(fed, count), min(swept, count)
    assert batch_digest(pool_spec) == batch_digest(spec(jobs={"range": {"count": count}})), (
        "cancelling a batch must not make it another batch (fed again)"
    )
    memory = Memory(batch=Batch(count, fed, batch_digest(pool_spec), swept))
    decided = plan(
        gathered(
            pool_spec,
            memory=memory,
            feeder_progress=min(progress, count),
            sweeper_progress=min(progress, count),
            stats=QueueStats(in_flight=running),
        )
    )
    batch = decided.memory.batch
    assert decided.feed is None and batch.cancelled
    assert batch.swept == max(swept, min(progress, count))
    assert (decided.sweep is None) == (batch.swept >= count)
    if decided.sweep is not None:
        assert decided.sweep.swept == batch.swept and not decided.idle
    done = batch.swept >= count and running == 0
    assert complete(decided)["status"] == ("True" if done else "False")
    assert complete(decided)["reason"] == (reasons.CANCELLED if done else reasons.CANCELLING)


def test_a_batch_cancelled_mid_feed_stops_feeding_sweeps_and_completes_once_nothing_runs():
    feeding = spec(jobs={"range": {"count": 3000}})
    g = settle(gathered(feeding, feeder_progress=500))
    assert plan(g).feed == Batch(3000, 500, batch_digest(feeding))

    cancelled = spec(jobs={"range": {"count": 3000}, "cancel": True})
    g = dataclasses.replace(
        g, spec=cancelled, generation=2, feeder_progress=1000, stats=QueueStats(in_flight=2)
    )
    decided = plan(g)
    # the feeder's last progress is kept (what was fed), and the sweep starts at the first job
    assert decided.feed is None and decided.sweep == Batch(3000, 1000, batch_digest(cancelled), 0)
    assert complete(decided)["reason"] == reasons.CANCELLING

    g = dataclasses.replace(settle(g), sweeper_progress=3000)
    decided = plan(g)
    assert decided.sweep is None and decided.memory.batch.swept == 3000
    assert (complete(decided)["status"], complete(decided)["reason"]) == ("False", reasons.CANCELLING)
    assert "2 running jobs" in complete(decided)["message"]

    g = dataclasses.replace(settle(g), stats=QueueStats(cancelled=2998, succeeded=2), now=g.now + 2)
    decided = plan(g)
    assert (complete(decided)["status"], complete(decided)["reason"]) == ("True", reasons.CANCELLED)
    assert any(t.type == reasons.COMPLETE and t.reason == reasons.CANCELLED for t in decided.events)
    assert decided.status["batch"] == {
        "total": 3000,
        "fed": 1000,
        "digest": batch_digest(cancelled),
        "swept": 3000,
    }

    # an operator restart reads how far the cancel went from the status: nothing is swept again
    restarted = dataclasses.replace(
        g, memory=Memory(), stored_status=decided.memory.status, sweeper_progress=None
    )
    again = plan(restarted)
    assert again.sweep is None and again.feed is None
    assert again.status is None and not again.events, "the cancelled batch's status is as it was"


def test_a_cancel_undone_feeds_the_rest_and_drops_its_progress_from_the_status():
    cancelled = spec(jobs={"range": {"count": 3000}, "cancel": True})
    g = settle(
        settle(gathered(cancelled, memory=Memory(batch=Batch(3000, 1000, batch_digest(cancelled), 3000))))
    )
    resumed = dataclasses.replace(g, spec=spec(jobs={"range": {"count": 3000}}), generation=2)
    decided = plan(resumed)
    assert decided.sweep is None and decided.feed == Batch(3000, 1000, batch_digest(cancelled))
    assert decided.status["batch"]["swept"] is None  # the merge patch removes it
    assert "swept" not in decided.memory.status["batch"]
    steady = settle(dataclasses.replace(resumed, feeder_progress=1000))
    assert plan(dataclasses.replace(steady, now=steady.now + 5)).status is None


PROBLEM_FACTS = ("spec_problem", "refused", "queue_problem", "stats_problem", "credentials_problem")
some_problems = st.sets(st.sampled_from(PROBLEM_FACTS), max_size=2).map(
    lambda facts: {
        fact: Problem(reasons.QUEUE_UNAVAILABLE, fact, spec_ok=fact == "stats_problem") for fact in facts
    }
)


@settings(max_examples=200, deadline=None)
@given(
    max_length=st.integers(1, 10**6),
    payload=st.none() | st.integers(1, 10**6),
    durability=st.sampled_from([None, "replicated"]),
    queue_open=st.booleans(),
    stored=st.booleans(),
    problems=some_problems,
)
def test_queue_settings_are_stored_when_connected_and_they_differ_whatever_the_stats(
    max_length, payload, durability, queue_open, stored, problems
):
    raw = {"maxLength": max_length, **({"maxPayloadBytes": payload} if payload else {})}
    pool_spec = spec(queue={**raw, **({"durability": durability} if durability else {})})
    wanted = queue_settings(pool_spec)
    g = gathered(pool_spec, queue_open=queue_open, queue_configured=wanted if stored else None, **problems)
    blocked = set(problems) & {"spec_problem", "refused", "queue_problem"}
    expected = wanted if queue_open and not stored and not blocked else None
    assert plan(g).configure == expected


def credential_reads():
    held = {acl.WORKER: Credentials("w1", None, ""), acl.PRODUCER: Credentials("p1", None, "")}
    fresh = {acl.WORKER: "new-w", acl.PRODUCER: "new-p"}
    return st.sampled_from(
        [
            CredentialsRead({}, "", secrets={acl.WORKER: None, acl.PRODUCER: None}, fresh=fresh),
            CredentialsRead(held, "r", secrets=held, fresh=fresh),
            CredentialsRead(held, ""),
            CredentialsRead(held, "", recheck=True),
        ]
    )


@settings(max_examples=200, deadline=None)
@given(read=credential_reads(), problems=some_problems)
def test_a_managed_pools_deployment_mounts_the_credentials_act_writes_before_it(read, problems):
    g = gathered(spec(), managed=True, credentials=None, credentials_read=read, **problems)
    decided = plan(g)
    deployment = next((obj for obj in decided.apply if obj["kind"] == "Deployment"), None)
    if problems:
        assert decided.credentials == ()  # nothing is set up for a pool that cannot use it
        if not set(problems) <= {"stats_problem"}:
            assert deployment is None
        return
    writes, worker = plan_writes(read, g.pods)
    assert decided.credentials == writes
    assert worker is not None and deployment is not None
    template = deployment["spec"]["template"]["metadata"]["annotations"]
    assert template[builders.ANNOTATION_CREDENTIALS] == credential_digest(worker)
    assert plan(g) == decided, "deciding the writes is pure"


def test_a_managed_pool_without_a_worker_secret_plans_no_workers_and_no_writes_unread():
    decided = plan(gathered(spec(), managed=True, credentials=None, credentials_read=None))
    assert decided.credentials == () and decided.apply == ()


@settings(max_examples=300, deadline=None)
@given(
    count=st.integers(1, 100),
    fed=st.integers(0, 100),
    swept=st.none() | st.integers(0, 100),
    cancel=st.booleans(),
    has_jobs=st.booleans(),
    reachable=st.booleans(),
)
def test_the_plan_says_whether_to_start_continue_or_stop_the_feeder_and_the_sweeper(
    count, fed, swept, cancel, has_jobs, reachable
):
    jobs = {"range": {"count": count}, **({"cancel": True} if cancel else {})}
    pool_spec = spec(jobs=jobs) if has_jobs else spec()
    remembered = Batch(count, min(fed, count), batch_digest(pool_spec), swept) if has_jobs else None
    down = Problem(reasons.QUEUE_UNAVAILABLE, "down", spec_ok=True)
    g = gathered(
        pool_spec,
        memory=Memory(batch=remembered),
        stats=QueueStats() if reachable else None,
        stats_problem=None if reachable else down,
    )
    decided = plan(g)
    batch = decided.memory.batch
    assert (decided.feeder is Action.STOP) == (batch is None or batch.cancelled)
    assert (decided.sweeper is Action.STOP) == (batch is None or not batch.cancelled)
    assert (decided.feeder is Action.START) == (decided.feed is not None)
    assert (decided.sweeper is Action.START) == (decided.sweep is not None)
    assert Action.START not in (decided.feeder, decided.sweeper) or Action.STOP in (
        decided.feeder,
        decided.sweeper,
    ), "feeding and cancelling never both go on"
    if not reachable:
        assert Action.START not in (decided.feeder, decided.sweeper), "nothing starts on an unreachable queue"


@settings(max_examples=100, deadline=None)
@given(queue=stats, written=st.booleans())
def test_the_next_memory_keeps_the_last_written_status_unless_this_one_was_written(queue, written):
    before = settle(gathered(spec(), stats=queue))
    decided = plan(
        dataclasses.replace(before, stats=dataclasses.replace(queue, submitted=queue.submitted + 1))
    )
    after = next_memory(before.memory, decided, written)
    if written:
        assert after == decided.memory
    else:
        assert (after.status, after.status_written_at) == (
            before.memory.status,
            before.memory.status_written_at,
        )
        assert dataclasses.replace(after, status=None, status_written_at=0.0) == dataclasses.replace(
            decided.memory, status=None, status_written_at=0.0
        )
