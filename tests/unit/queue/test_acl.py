"""The ACL rules of a pool's users, as pure functions (tests/integration/queue/test_acl.py runs them)."""

from jobpool.queue import acl
from jobpool.queue.redis import library


def test_the_commands_are_read_from_the_library():
    source = library.sources()
    assert "info|memory" in acl.script_commands(source[library.PRELUDE])
    assert {"xautoclaim", "xinfo|consumers", "xgroup|delconsumer", "xreadgroup"} <= acl.script_commands(
        source["fetch"]
    )
    assert "xpending" in acl.script_commands(source["release"])  # called through pcall


def test_a_producer_gets_no_command_that_fetches_acks_or_deletes():
    assert {"xack", "xreadgroup", "xclaim", "xautoclaim", "xdel", "del", "unlink", "srem", "set"}.isdisjoint(
        acl.role_commands(acl.PRODUCER)
    )
    assert {"xreadgroup", "xack", "fcall"} <= set(acl.role_commands(acl.WORKER))


def test_no_user_may_run_code_of_its_own():
    for role in acl.ROLES:
        commands = set(acl.role_commands(role))
        assert "fcall" in commands
        assert (
            not {
                "info",
                "scan",
                "keys",
                "eval",
                "evalsha",
                "eval_ro",
                "evalsha_ro",
                "script|load",
                "script|flush",
                "script|kill",
                "function|load",
                "function|delete",
                "function|flush",
                "function|restore",
                "function|kill",
            }
            & commands
        ), role


def test_rules_start_from_reset_and_reach_only_the_pools_keys():
    rules = acl.user_rules("team-a", "p1", acl.WORKER, ("new", "old"))
    assert rules[:5] == ["reset", "on", ">new", ">old", "resetchannels"]
    assert [r for r in rules if "~" in r] == ["~{jobpool:team-a/p1}:*"]
    producer = acl.user_rules("team-a", "p1", acl.PRODUCER, ("pw",))
    assert "(~{jobpool:team-a/p1}:stream +xadd +xgroup|create)" in producer
    assert "+xadd" not in producer and all("team-a/p1}" in r for r in producer if "~" in r)


def test_the_user_url_keeps_the_queue_address_and_replaces_the_credentials():
    assert (
        acl.user_url("redis://:admin@jp-redis.ops.svc:6379/0", "jobpool.a.p.worker", "pw")
        == "redis://jobpool.a.p.worker:pw@jp-redis.ops.svc:6379/0"
    )
    assert (
        acl.user_url("rediss://default:x@h:6380/2?password=x&ssl_cert_reqs=none", "u", "p/w")
        == "rediss://u:p%2Fw@h:6380/2?ssl_cert_reqs=none"
    )
    assert acl.user_url("redis://h", "u", "p") == "redis://u:p@h"


def test_tenants_get_no_info_and_select_only_for_a_url_naming_a_db():
    for role in acl.ROLES:
        assert not any(c.startswith("info") or c == "select" for c in acl.role_commands(role))
        assert "+select" not in acl.user_rules("a", "p", role, ("pw",))
        assert "+select" in acl.user_rules("a", "p", role, ("pw",), select=True)


def test_a_producer_reads_only_the_results_and_ended_streams_with_xread():
    producer = acl.user_rules("team-a", "p1", acl.PRODUCER, ("pw",))
    assert "+xread" not in producer and "+hset" not in producer and "+zscore" not in producer
    assert "(%R~{jobpool:team-a/p1}:results %R~{jobpool:team-a/p1}:ended +xread +xrevrange)" in producer
    assert "(%R~{jobpool:team-a/p1}:cancelled +zscore)" in producer
    assert "(~{jobpool:team-a/p1}:memory +hincrby)" in producer
