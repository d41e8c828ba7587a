"""The web page's Redis user (jobpool.queue.viewer) on a real redis-server: the whole page works
under it, it finds the pools of its namespaces and no others, and it changes nothing unless
actions are on; the operator keeps it (jobpool.controller.ui_viewer)."""

from __future__ import annotations

import asyncio
import os

import pytest
import redis as redis_sync
import redis.asyncio as aioredis
import requests
from redis.exceptions import NoPermissionError

from jobpool.controller.credentials import QueueAdmin
from jobpool.controller.ui_viewer import keep_viewer
from jobpool.queue import acl, viewer
from jobpool.queue.keys import PoolKeys
from jobpool.queue.redis import library
from tests.helpers import SyncQueue, wait_until
from tests.integration.ui.conftest import start_ui  # noqa: F401  (the fixture)


def viewer_url(server, password: str) -> str:
    return acl.user_url(server.url, viewer.USER, password)


@pytest.fixture
def namespaces(redis_server, pool_name):
    """Two namespaces with a pool each, one with a dead job: the viewer may read only the first."""
    mine, other = f"va-{pool_name}"[:63], f"vb-{pool_name}"[:63]
    queues = [SyncQueue(redis_server.url, mine, "shown"), SyncQueue(redis_server.url, other, "hidden")]
    queues[0].submit_many([{"n": 1}, {"fail": 1}], ["wait-1", "dead-1"])
    (job,) = [j for j in queues[0].fetch("w", 2, 0) if j.id == "dead-1"]
    queues[0].fail(job, "boom", max_attempts=1, backoff=0, max_backoff=0)
    queues[1].submit_many([{"secret": 1}], ["hidden-1"])
    yield mine, other
    for queue in queues:
        queue.delete_all()
        queue.close()
    redis_sync.Redis.from_url(redis_server.url).acl_deluser(viewer.USER)


def apply(server, namespaces, password: str, actions: bool) -> None:
    async def run():
        admin = aioredis.from_url(server.url)
        try:
            await library.load_everywhere(admin)  # as the operator does: the library, then the users
            await viewer.apply_viewer(admin, namespaces, [password], actions)
        finally:
            await admin.aclose()

    asyncio.run(run())


def denials(server) -> list[dict]:
    log = redis_sync.Redis.from_url(server.url, decode_responses=True).acl_log(count=1000)
    return [entry for entry in log if entry["username"] == viewer.USER]


def test_the_viewer_reads_every_page_of_its_namespaces_and_changes_nothing(
    redis_server, namespaces, start_ui
):
    mine, other = namespaces
    password = os.urandom(16).hex()
    apply(redis_server, [mine], password, actions=False)
    redis_sync.Redis.from_url(redis_server.url).acl_log_reset()
    ui = start_ui(viewer_url(redis_server, password), [], namespace=mine)

    pools = requests.get(ui.base, timeout=10).text
    assert f'data-pool="{mine}/shown"' in pools and "hidden" not in pools
    base = f"{ui.base}pools/{mine}/shown"
    for path in (
        "",
        "?state=delayed",
        "?state=succeeded",
        "/dead",
        "/job?id=wait-1",
        "/job?id=dead-1",
        "?q=wait-1",
    ):
        page = requests.get(base + path, timeout=10).text
        assert "may not read" not in page and "refused" not in page, (path, page)
    assert "boom" in requests.get(base + "/job?id=dead-1", timeout=10).text
    dead = requests.get(base + "/dead", timeout=10).text
    assert "read-only" in dead and 'class="replay"' not in dead
    # the only refusal was the page's own check that it may not delete dead letters
    assert {entry["object"] for entry in denials(redis_server)} <= {"xdel"}

    client = redis_sync.Redis.from_url(viewer_url(redis_server, password))
    shown, hidden = PoolKeys(mine, "shown"), PoolKeys(other, "hidden")
    for denied in (
        lambda: client.xadd(shown.stream, {"id": "x", "p": "1"}),
        lambda: client.xdel(shown.dead, "0-0"),
        lambda: client.delete(shown.stream),
        lambda: client.hset(shown.counters, "succeeded", 1),
        lambda: client.xreadgroup("workers", "w", {shown.stream: ">"}),
        lambda: client.hgetall(hidden.counters),
        lambda: client.xread({hidden.stream: "0-0"}),
        lambda: client.config_get("*"),
        lambda: client.info("memory"),
        lambda: client.acl_list(),
        lambda: client.flushall(),
    ):
        with pytest.raises(NoPermissionError):
            denied()
    with pytest.raises(Exception, match=r"NOPERM|no permissions|can't"):
        client.eval("return redis.call('DEL', KEYS[1])", 1, shown.stream)
    client.close()


def test_with_actions_the_viewer_replays_a_dead_job(redis_server, namespaces, start_ui):
    mine, _ = namespaces
    password = os.urandom(16).hex()
    apply(redis_server, [mine], password, actions=True)
    ui = start_ui(viewer_url(redis_server, password), [], namespace=mine)
    dead = requests.get(f"{ui.base}pools/{mine}/shown/dead", timeout=10).text
    assert "may replay and purge" in dead
    token = dead.split('action="replay"><input type="hidden" name="token" value="')[1].split('"')[0]
    replayed = requests.post(
        f"{ui.base}pools/{mine}/shown/replay",
        data={"token": token, "id": "dead-1"},
        allow_redirects=False,
        timeout=10,
    )
    assert replayed.status_code == 303 and "n=1" in replayed.headers["Location"]


def test_the_operator_sets_the_viewer_again_after_redis_lost_it(redis_server, namespaces):
    mine, _ = namespaces
    password = os.urandom(16).hex()
    plain = redis_sync.Redis.from_url(redis_server.url)

    async def run():
        admin = QueueAdmin(redis_server.url)
        keeper = asyncio.create_task(keep_viewer(admin, [mine], password, False, interval=0.05))
        try:
            await asyncio.to_thread(
                wait_until, lambda: viewer.USER in plain.acl_users(), 10, 0.05, "the viewer user"
            )
            plain.acl_deluser(viewer.USER)  # what a restart without ACL persistence does
            await asyncio.to_thread(
                wait_until, lambda: viewer.USER in plain.acl_users(), 10, 0.05, "the viewer again"
            )
        finally:
            keeper.cancel()
            await admin.close()

    asyncio.run(run())
    assert redis_sync.Redis.from_url(viewer_url(redis_server, password)).ping()
    plain.close()
