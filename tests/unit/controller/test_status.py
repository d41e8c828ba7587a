"""Status and conditions: Kubernetes API conventions, transitions reported once."""

from jobpool.controller.status import (
    Observation,
    Problem,
    build_status,
    merge_conditions,
    only_counters_changed,
    status_changed,
    unschedulable,
)
from jobpool.queue.base import QueueStats, WorkerInfo


def obs(**kw):
    base = dict(
        pool="thumbnails",
        generation=3,
        replicas=2,
        ready_replicas=2,
        desired_replicas=2,
        stats=QueueStats(
            waiting=120,
            in_flight=8,
            delayed=3,
            dead_letter=1,
            submitted=1000,
            succeeded=868,
            retried=5,
            dead_lettered=1,
            workers=(WorkerInfo("p1", 4, 4, 0.0), WorkerInfo("p2", 4, 4, 0.0)),
        ),
        problem=None,
        batch_total=None,
    )
    return Observation(**{**base, **kw})


def conditions(status):
    return {c["type"]: c for c in status["conditions"]}


def test_status_carries_the_design_fields():
    status, _ = build_status(obs(), {}, now=0.0)
    assert status["observedGeneration"] == 3 and status["selector"] == "jobpool.dev/pool=thumbnails"
    assert (status["replicas"], status["readyReplicas"], status["desiredReplicas"]) == (2, 2, 2)
    assert status["queue"] == {
        "waiting": 120,
        "inFlight": 8,
        "delayed": 3,
        "scheduled": 0,
        "deadLetter": 1,
        "waitingByPriority": [],
    }
    assert status["jobs"] == {
        "submitted": 1000,
        "succeeded": 868,
        "retried": 5,
        "deadLettered": 1,
        "permanent": 0,
        "cancelled": 0,
    }
    assert status["saturation"] == 1.0
    c = conditions(status)
    assert c["Ready"]["status"] == "True" and c["Degraded"]["status"] == "False"
    assert c["Progressing"]["status"] == "False" and "Complete" not in c


def test_unreachable_queue_is_degraded_and_keeps_the_last_counters():
    first, _ = build_status(obs(), {}, now=0.0)
    problem = Problem("QueueUnavailable", "spec.queue: cannot reach the queue at redis://q:6379/0")
    status, transitions = build_status(obs(stats=None, problem=problem), first, now=10.0)
    c = conditions(status)
    assert c["Degraded"]["status"] == "True" and c["Degraded"]["reason"] == "QueueUnavailable"
    assert "cannot reach the queue" in c["Degraded"]["message"]
    assert c["Ready"]["status"] == "False"
    assert status["queue"] == first["queue"] and status["jobs"] == first["jobs"]
    assert {(t.type, t.status) for t in transitions} == {("Degraded", "True"), ("Ready", "False")}
    assert all(t.warning for t in transitions)


def test_last_transition_time_moves_only_on_a_flip():
    desired = [{"type": "Ready", "status": "True", "reason": "WorkersReady", "message": "2/2"}]
    first, flips = merge_conditions([], desired, generation=1, now=0.0)
    assert [t.type for t in flips] == ["Ready"]
    desired[0]["message"] = "3/3"
    again, flips = merge_conditions(first, desired, generation=2, now=100.0)
    assert flips == [] and again[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert again[0]["observedGeneration"] == 2
    desired[0]["status"] = "False"
    flipped, flips = merge_conditions(again, desired, generation=2, now=200.0)
    assert len(flips) == 1 and flipped[0]["lastTransitionTime"] != first[0]["lastTransitionTime"]


def test_scaling_is_progressing_and_not_ready():
    c = conditions(build_status(obs(replicas=1, ready_replicas=1, desired_replicas=3), {}, now=0.0)[0])
    assert c["Progressing"]["status"] == "True" and c["Ready"]["status"] == "False"
    assert "1/3" in c["Ready"]["message"]


def test_batch_is_complete_only_when_fed_and_every_job_finished():
    done = QueueStats(submitted=10, succeeded=9, dead_lettered=1)
    c = conditions(build_status(obs(stats=done, batch_total=10, batch_fed=10), {}, now=0.0)[0])
    assert c["Complete"]["status"] == "True" and "9 succeeded, 1 dead-lettered" in c["Complete"]["message"]
    assert c["Complete"]["reason"] == "CompletedWithFailures"
    clean = QueueStats(submitted=10, succeeded=10)
    c = conditions(build_status(obs(stats=clean, batch_total=10, batch_fed=10), {}, now=0.0)[0])
    assert (c["Complete"]["status"], c["Complete"]["reason"]) == ("True", "BatchFinished")
    c = conditions(build_status(obs(stats=done, batch_total=10, batch_fed=5), {}, now=0.0)[0])
    assert c["Complete"]["status"] == "False"
    running = QueueStats(submitted=10, succeeded=9, in_flight=1)
    c = conditions(build_status(obs(stats=running, batch_total=10, batch_fed=10), {}, now=0.0)[0])
    assert c["Complete"]["status"] == "False" and c["Complete"]["reason"] == "BatchRunning"


def test_a_batch_whose_remaining_jobs_were_cancelled_is_complete():
    done = QueueStats(submitted=10, succeeded=8, cancelled=2)
    status, _ = build_status(obs(stats=done, batch_total=10, batch_fed=10), {}, now=0.0)
    c = conditions(status)
    assert (c["Complete"]["status"], c["Complete"]["reason"]) == ("True", "BatchFinished")
    assert "8 succeeded, 0 dead-lettered, 2 cancelled" in c["Complete"]["message"]
    assert status["jobs"]["cancelled"] == 2


def test_a_batch_whose_jobs_failed_permanently_is_complete_with_failures():
    done = QueueStats(submitted=10, succeeded=8, dead_lettered=1, permanent=1)
    status, _ = build_status(obs(stats=done, batch_total=10, batch_fed=10), {}, now=0.0)
    c = conditions(status)
    assert (c["Complete"]["status"], c["Complete"]["reason"]) == ("True", "CompletedWithFailures")
    assert "8 succeeded, 2 dead-lettered" in c["Complete"]["message"]
    assert status["jobs"]["permanent"] == 1


def test_an_unchanged_status_is_not_written_and_counters_can_wait():
    status, _ = build_status(obs(), {}, now=0.0)
    same, _ = build_status(obs(), status, now=50.0)
    assert not status_changed(status, same)
    busier, _ = build_status(obs(stats=QueueStats(waiting=5)), status, now=60.0)
    assert status_changed(status, busier) and only_counters_changed(status, busier)
    scaled, _ = build_status(obs(desired_replicas=4), status, now=60.0)
    assert not only_counters_changed(status, scaled)


def test_a_running_batch_changes_only_counters_until_it_is_fed_or_done():
    def status_at(fed, succeeded, previous):
        stats = QueueStats(submitted=fed, waiting=fed - succeeded, succeeded=succeeded)
        return build_status(
            obs(stats=stats, batch_total=100, batch_fed=fed),
            previous,
            now=0.0,
            batch={"total": 100, "fed": fed, "digest": "d"},
        )[0]

    first = status_at(50, 10, {})
    assert only_counters_changed(first, status_at(50, 20, first))
    assert only_counters_changed(first, status_at(60, 20, first))
    fed = status_at(100, 20, first)
    assert not only_counters_changed(first, fed), "all fed is news in the Complete message"
    assert only_counters_changed(fed, status_at(100, 90, fed))


def pod(name, scheduled=None, deleting=False):
    meta = {"name": name, **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    conditions = [{"type": "PodScheduled", **scheduled}] if scheduled else []
    return {"metadata": meta, "status": {"conditions": conditions}}


def test_pods_no_node_can_hold_show_as_waiting_for_capacity():
    no_gpu = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    pods = [
        pod("a", {"status": "False", "reason": "Unschedulable", "message": no_gpu}),
        pod("b", {"status": "False", "reason": "Unschedulable", "message": no_gpu}),
        pod("c", {"status": "True"}),
        pod("d"),
        pod("e", {"status": "False", "reason": "Unschedulable", "message": no_gpu}, deleting=True),
        pod("f", {"status": "False", "reason": "SchedulingGated", "message": "gated"}),
    ]
    waiting = unschedulable(pods)
    assert waiting == (no_gpu, no_gpu)
    c = conditions(
        build_status(
            obs(replicas=4, ready_replicas=1, desired_replicas=4, unschedulable=waiting), {}, now=0.0
        )[0]
    )
    assert (c["Progressing"]["status"], c["Progressing"]["reason"]) == ("True", "WaitingForCapacity")
    assert c["Progressing"]["message"] == f"2 of 4 worker pods wait for node capacity: {no_gpu}"
    assert c["Ready"]["status"] == "False"
    c = conditions(build_status(obs(replicas=4, ready_replicas=1, desired_replicas=4), {}, now=0.0)[0])
    assert c["Progressing"]["reason"] == "ScalingWorkers"
