"""The uninstall hook's policy: refuse, delete or orphan the pools the finalizer guards."""

from __future__ import annotations

from jobpool.controller.handlers import FINALIZER
from jobpool.controller.release_guard import Decision, GuardedPool, decide, pool_of


def pool(name: str, *finalizers: str, deleting: bool = False, namespace: str = "team-a") -> GuardedPool:
    return GuardedPool(namespace, name, finalizers, deleting)


def test_no_guarded_pool_lets_any_policy_through():
    pools = [pool("plain"), pool("other", "example.com/keep")]
    for policy in ("refuse", "delete", "orphan"):
        assert decide(pools, policy) == Decision()


def test_refuse_names_the_pools_and_what_to_do():
    pools = [pool(f"p{n}", FINALIZER) for n in range(7)] + [pool("plain")]
    message = decide(pools, "refuse").refusal
    assert message.startswith(
        f"7 JobPool(s) still carry the finalizer {FINALIZER} (team-a/p0, "
        f"team-a/p1, team-a/p2, team-a/p3, team-a/p4 and 2 more)"
    )
    assert "kubectl delete jobpools --all -n NS" in message
    assert "uninstall.pools=delete" in message and "uninstall.pools=orphan" in message


def test_delete_skips_pools_already_being_deleted_and_orphan_takes_them_all():
    pools = [pool("a", FINALIZER), pool("b", FINALIZER, deleting=True), pool("c")]
    assert [p.name for p in decide(pools, "delete").delete] == ["a"]
    assert [p.name for p in decide(pools, "orphan").orphan] == ["a", "b"]


def test_a_pool_object_is_read_with_its_finalizers_and_deletion():
    obj = {
        "metadata": {
            "namespace": "n",
            "name": "x",
            "finalizers": [FINALIZER],
            "deletionTimestamp": "2026-01-01T00:00:00Z",
        }
    }
    assert pool_of(obj) == GuardedPool("n", "x", (FINALIZER,), True)
