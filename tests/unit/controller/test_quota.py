"""Worker pods Kueue has not admitted: the pool's Progressing condition says WaitingForQuota with Kueue's
own message (from the pod's Workload), and forgets it once Kueue admits the pod."""

from jobpool.controller import plan as plan_module
from jobpool.controller.reconcile import ClusterCache, slim
from tests.unit.controller.test_plan import gathered

GATE = {"name": "kueue.x-k8s.io/admission"}
MESSAGE = (
    "couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor default, "
    "250m more needed"
)


def pod(name, gated=True):
    return slim(
        "Pod",
        {
            "metadata": {"name": name, "namespace": "team-b", "labels": {"jobpool.dev/pool": "p"}},
            "spec": {"schedulingGates": [GATE] if gated else [], "containers": [{"name": "worker"}]},
            "status": {
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]
            },
        },
    )


def workload(pod_name, reserved: bool, message=MESSAGE):
    return {
        "metadata": {
            "name": f"pod-{pod_name}-1",
            "namespace": "team-b",
            "ownerReferences": [{"kind": "Pod", "name": pod_name}],
        },
        "status": {
            "conditions": [
                {
                    "type": "QuotaReserved",
                    "status": "True" if reserved else "False",
                    "reason": "Pending",
                    "message": message,
                }
            ]
        },
    }


def progressing(decided):
    return next(c for c in decided.status["conditions"] if c["type"] == "Progressing")


def test_gated_pods_make_the_pool_wait_for_quota_with_kueues_message():
    cache = ClusterCache()
    cache.on_workload_event("ADDED", workload("p-1", reserved=False))
    pods = {"p-1": pod("p-1"), "p-2": pod("p-2"), "p-0": pod("p-0", gated=False)}
    quota = {name: cache.quota[("team-b", name)] for name in pods if ("team-b", name) in cache.quota}
    decided = plan_module.plan(gathered(pods=pods, quota=quota))
    cond = progressing(decided)
    assert cond["reason"] == "WaitingForQuota" and cond["status"] == "True"
    assert cond["message"].startswith("2 of ") and cond["message"].endswith(
        f"wait for quota (Kueue): {MESSAGE}"
    )


def test_an_admitted_workload_is_forgotten():
    cache = ClusterCache()
    cache.on_workload_event("ADDED", workload("p-1", reserved=False))
    cache.on_workload_event(
        "MODIFIED", workload("p-1", reserved=True, message="Quota reserved in ClusterQueue teams")
    )
    assert cache.quota == {}
    cache.on_workload_event("ADDED", workload("p-2", reserved=False))
    cache.on_workload_event("DELETED", workload("p-2", reserved=False))
    assert cache.quota == {}


def test_without_gated_pods_the_pool_does_not_wait_for_quota():
    decided = plan_module.plan(gathered(pods={"p-0": pod("p-0", gated=False)}, quota={"p-0": MESSAGE}))
    assert progressing(decided)["reason"] != "WaitingForQuota"
