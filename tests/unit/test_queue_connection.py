"""Queue URLs of the three topologies (jobpool.queue.connection): parsed in one place, refused
with a one-line reason that quotes no password."""

import pytest

from jobpool.queue import QueueError, acl, open_queue
from jobpool.queue.connection import CLUSTER, SENTINEL, SINGLE, parse_address, topology
from jobpool.queue.urls import redact_url


def test_a_cluster_url_names_its_seed_nodes_and_credentials():
    address = parse_address("redis+cluster://user:s3cret@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert address.topology == CLUSTER
    assert address.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert (address.username, address.password) == ("user", "s3cret")


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database():
    address = parse_address("redis+sentinel://:pw@s1,s2:26380/mymaster/2?sentinel_password=spw")
    assert address.topology == SENTINEL
    assert address.nodes == (("s1", 26379), ("s2", 26380))
    assert (address.master, address.db, address.password, address.sentinel_password) == (
        "mymaster",
        2,
        "pw",
        "spw",
    )


def test_plain_urls_stay_single_instance():
    assert {topology(url) for url in ("redis://h:1/0", "rediss://h", "unix:///run/redis.sock")} == {SINGLE}


@pytest.mark.parametrize(
    "url, reason",
    [
        ("redis+sentinel://:topsecret@s1:26379", "master name"),
        ("redis+sentinel://:topsecret@s1:26379/m/x", "database is not a number"),
        ("redis+cluster://:topsecret@n1:7000/3", "only database 0"),
        ("redis+cluster://:topsecret@n1:99999", "port"),
        ("redis+cluster://:topsecret@:7000", "no host"),
    ],
)
def test_a_bad_ha_url_is_refused_in_one_line_without_its_password(url, reason):
    with pytest.raises(QueueError) as error:
        open_queue(url, "ns", "pool")
    message = str(error.value)
    assert reason in message and "topsecret" not in message and "\n" not in message


def test_the_sentinels_password_is_redacted_like_the_servers():
    assert redact_url("redis+sentinel://:pw@s1,s2/m?sentinel_password=spw") == (
        "redis+sentinel://:***@s1,s2/m?sentinel_password=***"
    )


def test_a_pools_user_url_keeps_every_node_the_master_and_the_sentinel_password():
    assert acl.user_url(
        "redis+sentinel://:admin@s1:26379,s2:26379/mymaster/0?sentinel_password=spw",
        "jobpool.ns.p.worker",
        "pw",
    ) == ("redis+sentinel://jobpool.ns.p.worker:pw@s1:26379,s2:26379/mymaster/0?sentinel_password=spw")
    assert (
        acl.user_url("redis+cluster://:admin@n1:7000,n2:7001", "u", "pw")
        == "redis+cluster://u:pw@n1:7000,n2:7001"
    )
