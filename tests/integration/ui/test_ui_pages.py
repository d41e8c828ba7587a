"""`jobpool ui` over HTTP against a real redis-server, with a pool's own Redis users: what each
credential sees and may do, CSRF, escaping, no credential in any page or log, and the cost of
many open pages in Redis commands."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import redis as redis_sync
import requests

from tests.fixtures.redis import running_redis
from tests.helpers import SyncQueue

MARKUP = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def make_dead(worker_url: str, pool: str, job_id: str, payload, error: str) -> None:
    """Submit a job and dead-letter it as a worker would, under the worker's own credential."""
    queue = SyncQueue(worker_url, "it", pool)
    try:
        queue.submit_many([payload], [job_id])
        (job,) = [j for j in queue.fetch("ui-test-worker", 10, 0) if j.id == job_id]
        assert queue.fail(job, error, max_attempts=1, backoff=0, max_backoff=0) == "dead_lettered"
    finally:
        queue.close()


def tokens(html: str, action: str) -> list[str]:
    """The CSRF tokens of the page's `action` forms."""
    return re.findall(
        rf'action="{action}"><input type="hidden" name="token" value="([^"]+)"', html
    ) + re.findall(
        rf'action="{action}" data-confirm="[^"]*">\s*<input type="hidden" name="token" value="([^"]+)"', html
    )


def test_a_producer_sees_the_pool_read_only_and_a_forged_post_is_refused(
    redis_server, pool_name, pool_users, start_ui
):
    make_dead(pool_users.url("worker"), pool_name, "dead-1", {"n": 1}, "ValueError: boom")
    producer = SyncQueue(pool_users.url("producer"), "it", pool_name)
    producer.submit_many([{"n": 2}, {"n": 3}], ["wait-2", "wait-3"])
    producer.close()
    ui = start_ui(pool_users.url("producer"), [pool_name])

    pools = requests.get(ui.base, timeout=10)
    assert pools.status_code == 200 and f'data-pool="it/{pool_name}"' in pools.text
    assert re.search(r'data-field="waiting" class="num">2<', pools.text), pools.text
    # the figures, but no payload and no error: a producer's XREAD reaches only the results
    pool = requests.get(f"{ui.base}pools/it/{pool_name}", timeout=10).text
    assert "this credential may not read the waiting jobs" in pool and "wait-2" not in pool
    assert (
        "may not read the delayed jobs"
        in requests.get(f"{ui.base}pools/it/{pool_name}?state=delayed", timeout=10).text
    )
    dead = requests.get(f"{ui.base}pools/it/{pool_name}/dead", timeout=10).text
    assert "this credential may not read the dead letters" in dead and "ValueError" not in dead
    assert "<form" not in dead.replace('<form class="search"', "")  # no replay, no purge
    job = requests.get(f"{ui.base}pools/it/{pool_name}/job", params={"id": "dead-1"}, timeout=10).text
    assert "ValueError: boom" not in job and 'class="purge"' not in job and 'class="replay"' not in job

    # a POST made up by hand: no token, a token of another server, and the form fields right
    for token in (None, f"{int(time.time())}.{'0' * 64}"):
        form = {"id": "dead-1", "back": "dead", "confirm": "yes", **({"token": token} if token else {})}
        for action in ("replay", "purge"):
            reply = requests.post(
                f"{ui.base}pools/it/{pool_name}/{action}", data=form, allow_redirects=False, timeout=10
            )
            assert reply.status_code == 403, (action, reply.status_code, reply.text)
    admin = SyncQueue(redis_server.url, "it", pool_name)
    try:
        assert [d.id for d in admin.dead_letters()] == ["dead-1"]
    finally:
        admin.delete_all()
        admin.close()


def test_a_worker_credential_replays_and_purges_with_the_pages_tokens_only(
    redis_server, pool_name, pool_users, start_ui
):
    worker_url = pool_users.url("worker")
    make_dead(worker_url, pool_name, "dead-a", {"n": "a"}, "boom a")
    make_dead(worker_url, pool_name, "dead-b", {"n": "b"}, "boom b")
    ui = start_ui(worker_url, [pool_name])
    page = requests.get(f"{ui.base}pools/it/{pool_name}/dead", timeout=10).text
    assert "this credential may replay and purge dead letters" in page
    replay_token, purge_token = tokens(page, "replay")[0], tokens(page, "purge")[0]
    url = f"{ui.base}pools/it/{pool_name}/"

    refused = requests.post(
        url + "replay", data={"token": purge_token, "id": "dead-a"}, allow_redirects=False, timeout=10
    )
    assert refused.status_code == 403  # a purge form's token does not replay
    other_pool = requests.post(
        f"{ui.base}pools/it/{pool_name}x/replay",
        data={"token": replay_token, "id": "dead-a"},
        allow_redirects=False,
        timeout=10,
    )
    assert other_pool.status_code == 404
    replayed = requests.post(
        url + "replay",
        data={"token": replay_token, "id": "dead-a", "back": "dead"},
        allow_redirects=False,
        timeout=10,
    )
    assert replayed.status_code == 303 and replayed.headers["Location"] == "dead?done=replayed&n=1"
    unconfirmed = requests.post(
        url + "purge", data={"token": purge_token, "id": "dead-b"}, allow_redirects=False, timeout=10
    )
    assert unconfirmed.status_code == 400 and "tick the box" in unconfirmed.text
    purged = requests.post(
        url + "purge",
        data={"token": purge_token, "id": "dead-b", "confirm": "yes"},
        allow_redirects=False,
        timeout=10,
    )
    assert purged.status_code == 303
    assert "purged 1 dead job(s)" in requests.get(url + purged.headers["Location"], timeout=10).text

    admin = SyncQueue(redis_server.url, "it", pool_name)
    try:
        assert admin.dead_letters() == []
        assert admin.stats().waiting == 1  # dead-a waits again
    finally:
        admin.delete_all()
        admin.close()


def test_a_read_only_page_shows_and_accepts_no_action_whatever_the_credential(
    pool_name, pool_users, start_ui
):
    make_dead(pool_users.url("worker"), pool_name, "dead-r", {"n": 1}, "boom")
    ui = start_ui(pool_users.url("worker"), [pool_name], "--read-only")
    page = requests.get(f"{ui.base}pools/it/{pool_name}/dead", timeout=10).text
    assert "actions are turned off" in page and 'class="replay"' not in page


def test_markup_in_payloads_and_errors_renders_as_text(pool_name, pool_users, start_ui):
    make_dead(pool_users.url("worker"), pool_name, "x<b>1</b>", {"html": MARKUP}, f"ValueError: {MARKUP}")
    ui = start_ui(pool_users.url("worker"), [pool_name])
    for path, params in (
        (f"pools/it/{pool_name}/dead", {}),
        (f"pools/it/{pool_name}/job", {"id": "x<b>1</b>"}),
        (f"pools/it/{pool_name}", {"q": MARKUP}),
    ):
        reply = requests.get(ui.base + path, params=params, timeout=10)
        assert reply.status_code == 200
        assert (
            "<script>alert" not in reply.text
            and "<img src=x" not in reply.text
            and "<b>1</b>" not in reply.text
        )
        assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
    job = requests.get(f"{ui.base}pools/it/{pool_name}/job", params={"id": "x<b>1</b>"}, timeout=10).text
    assert "ValueError: &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in job


def test_no_password_in_any_page_event_or_log(redis_server, pool_name, pool_users, start_ui):
    worker_url = pool_users.url("worker")
    password = pool_users.passwords["worker"]
    make_dead(worker_url, pool_name, "dead-p", {"n": 1}, "boom")
    ui = start_ui(worker_url, [pool_name])
    wrong = start_ui(worker_url.replace(password, password + "-wrong"), [pool_name])
    seen = []
    for base in (ui.base, wrong.base):
        for path in (
            "",
            f"pools/it/{pool_name}",
            f"pools/it/{pool_name}?state=delayed",
            f"pools/it/{pool_name}?state=succeeded",
            f"pools/it/{pool_name}/dead",
            f"pools/it/{pool_name}/job?id=dead-p",
            f"pools/it/{pool_name}?q=dead-p",
        ):
            reply = requests.get(base + path, timeout=10)
            if base == wrong.base and path:  # the queue refuses: a page that says so, not a crash
                assert reply.status_code == 502 and "invalid username-password" in reply.text, (
                    path,
                    reply.text,
                )
            seen.append(reply.text)
        with requests.get(base + "events", stream=True, timeout=10) as events:
            seen.append(
                next(line for line in events.iter_lines(decode_unicode=True) if line.startswith("data:"))
            )
    assert "WRONGPASS" in seen[-1] or "invalid username-password" in seen[-1], seen[-1]
    assert "dead-p" in seen[5]
    for text in [*seen, ui.log(), wrong.log()]:
        assert password not in text
        assert pool_users.url("worker") not in text


def _commands(client: redis_sync.Redis) -> tuple[int, int]:
    """(commands the server ran, but for the measurement's own INFO and CONFIG; of them the calls
    of the status function, FCALL, one a refresh a pool)."""
    stats = client.info("commandstats")
    total = sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat"))
    return total, stats.get("cmdstat_fcall", {}).get("calls", 0)


def assert_one_refresh_worth(
    alone: tuple[int, int], crowded: tuple[int, int], span: float, refresh: float
) -> None:
    """With many viewers the UI refreshes no more often than with one (a count of refreshes, which a
    busy machine can only lower), and runs no command beyond each refresh's own."""
    (alone_total, alone_refreshes), (crowded_total, crowded_refreshes) = alone, crowded
    assert alone_refreshes >= 2, f"the UI refreshed {alone_refreshes} times in {span}s"
    per_refresh = alone_total / alone_refreshes
    assert crowded_refreshes <= span / refresh + 1, crowded
    assert crowded_total <= crowded_refreshes * per_refresh + 1, (alone, crowded)


def test_twenty_open_pages_cost_redis_no_more_than_one(start_ui):
    """The figures of a pool are read once per refresh for all viewers: 20 pages with live figures
    (each a page load and an SSE stream) add no Redis commands beyond one refresh's worth."""
    refresh, span = 0.5, 3.0
    with running_redis() as server:
        admin = redis_sync.Redis.from_url(server.url)
        SyncQueue(server.url, "it", "costly").submit_many(list(range(10)))
        ui = start_ui(server.url, ["costly"], "--refresh", str(refresh))
        requests.get(ui.base, timeout=10)

        def measure(tabs: int) -> tuple[tuple[int, int], list[int]]:
            async def run() -> tuple[tuple[int, int], list[int]]:
                received = [0] * tabs
                async with aiohttp.ClientSession() as session:

                    async def tab(index: int) -> None:
                        async with session.get(ui.base) as page:
                            assert page.status == 200
                        async with session.get(ui.base + "events") as stream:
                            async for line in stream.content:
                                if line.startswith(b"data: "):
                                    received[index] += 1

                    tasks = [asyncio.ensure_future(tab(i)) for i in range(tabs)]
                    await asyncio.sleep(0.5)  # every page loaded and listening
                    admin.config_resetstat()
                    await asyncio.sleep(span)
                    calls = _commands(admin)
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                return calls, received

            return asyncio.run(run())

        alone, _ = measure(0)
        crowded, received = measure(20)
        admin.close()
    print(
        f"Redis commands (refreshes) in {span}s at a {refresh}s refresh: {alone} with no page open, "
        f"{crowded} with 20"
    )
    assert all(count >= 2 for count in received), received
    assert_one_refresh_worth(alone, crowded, span, refresh)


def test_without_pools_named_the_page_finds_every_pool_and_new_ones_as_they_come(
    redis_server, pool_name, start_ui
):
    from jobpool.ui.app import UiSettings, UiState

    namespace = f"find-{pool_name}"[:63]
    first = SyncQueue(redis_server.url, namespace, "first")
    first.submit_many([1])

    async def run() -> tuple[list[str], list[str]]:
        state = UiState(UiSettings(url=redis_server.url, namespaces=(namespace,), discover_every=0))
        try:
            await state.refresher.refresh()
            before = sorted(state.pools)
            second = SyncQueue(redis_server.url, namespace, "second")
            await second.queue.submit_many([2])
            await second.queue.close()
            await state.refresher.refresh()
            return before, sorted(state.pools)
        finally:
            await state.close()

    try:
        before, after = asyncio.run(run())
        assert before == [f"{namespace}/first"] and after == [f"{namespace}/first", f"{namespace}/second"]
        ui = start_ui(redis_server.url, [], namespace=namespace)
        assert f'data-pool="{namespace}/first"' in requests.get(ui.base, timeout=10).text
    finally:
        for queue in (first, SyncQueue(redis_server.url, namespace, "second")):
            queue.delete_all()
            queue.close()


def test_a_pools_own_credential_must_name_its_pool(pool_name, pool_users, tmp_path):
    import subprocess
    import sys

    reply = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobpool.cli",
            "ui",
            "--queue",
            pool_users.url("producer"),
            "--namespace",
            "it",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert reply.returncode == 1
    assert "cannot list the pools of namespace it" in reply.stderr and "give --pool P" in reply.stderr
    assert pool_users.passwords["producer"] not in reply.stderr


def test_a_job_is_found_by_its_exact_id_not_by_an_id_that_contains_it(pool_name, pool_users, start_ui):
    producer = SyncQueue(pool_users.url("producer"), "it", pool_name)
    producer.submit_many([{"n": 10}, {"n": 1}], ["job-10", "job-1"])
    producer.close()
    ui = start_ui(pool_users.url("worker"), [pool_name])  # a producer reads no waiting payload
    page = requests.get(f"{ui.base}pools/it/{pool_name}/job", params={"id": "job-1"}, timeout=10).text
    assert '<dd class="job-id">job-1</dd>' in page and "&quot;n&quot;: 1\n" in page


def test_jobs_show_in_the_state_they_are_in(redis_server, pool_name, pool_users, start_ui):
    """Waiting, running (with its worker), delayed for a retry (with its due time), succeeded
    (with its result) and dead, each in its tab and on its own page."""
    worker = SyncQueue(pool_users.url("worker"), "it", pool_name)
    try:
        worker.submit_many([{"n": n} for n in range(4)], ["ok", "retry", "run", "wait"])
        fetched = {job.id: job for job in worker.fetch("pod-a", 3, 0)}
        worker.ack_many([(fetched["ok"], {"squared": 0})])
        assert (
            worker.fail(fetched["retry"], "try again", max_attempts=3, backoff=600, max_backoff=600)
            == "retried"
        )
        ui = start_ui(pool_users.url("worker"), [pool_name])
        base = f"{ui.base}pools/it/{pool_name}"
        queued = requests.get(base, timeout=10).text
        assert re.search(
            r'>run</a></td><td><span class="state running">running</span></td><td></td>'
            r'<td class="num">1</td><td>pod-a</td>',
            queued,
        ), queued
        assert re.search(r'>wait</a></td><td><span class="state waiting">waiting</span>', queued)
        delayed = requests.get(base + "?state=delayed", timeout=10).text
        assert re.search(
            r'>retry</a></td><td><span class="state delayed">delayed</span>.*due \d{4}-', delayed
        ), delayed
        succeeded = requests.get(base + "?state=succeeded", timeout=10).text
        assert "&quot;squared&quot;: 0" in succeeded
        expected = {"ok": "succeeded", "retry": "delayed", "run": "running", "wait": "waiting"}
        for job_id, state in expected.items():
            page = requests.get(base + "/job", params={"id": job_id}, timeout=10).text
            assert f'id="job-state">{state}<' in page, (job_id, page)
        assert "pod-a" in requests.get(base + "/job", params={"id": "run"}, timeout=10).text
        retry = requests.get(base + "/job", params={"id": "retry"}, timeout=10).text
        assert re.search(r"<dt>retry due</dt><dd>\d{4}-\d\d-\d\d ", retry), retry
        assert "knows no job" in requests.get(base + "/job", params={"id": "nope"}, timeout=10).text
    finally:
        worker.close()
        admin = SyncQueue(redis_server.url, "it", pool_name)
        admin.delete_all()
        admin.close()


def test_jobs_page_by_fifty_and_dead_letters_filter_by_error_text(pool_name, pool_users, start_ui):
    make_dead(pool_users.url("worker"), pool_name, "dead-disk", {"n": "d"}, "OSError: disk full")
    make_dead(pool_users.url("worker"), pool_name, "dead-net", {"n": "n"}, "TimeoutError: network down")
    producer = SyncQueue(pool_users.url("producer"), "it", pool_name)
    producer.submit_many([{"n": n} for n in range(60)], [f"job-{n:02d}" for n in range(60)])
    producer.close()
    ui = start_ui(pool_users.url("worker"), [pool_name])  # a producer reads no waiting payload
    base = f"{ui.base}pools/it/{pool_name}"

    first = requests.get(base, timeout=10).text
    shown = re.findall(r">(job-\d\d)</a>", first)
    assert shown == [f"job-{n:02d}" for n in range(50)]
    links = re.findall(r'<a class="next" href="([^"]+)">', first)
    assert len(links) == 1, first[-3000:]
    next_page = links[0]
    second = requests.get(f"{ui.base}pools/it/{next_page}".replace("&amp;", "&"), timeout=10).text
    assert re.findall(r">(job-\d\d)</a>", second) == [f"job-{n:02d}" for n in range(50, 60)]
    assert 'class="next"' not in second
    searched = requests.get(base, params={"q": "job-4"}, timeout=10).text
    assert re.findall(r">(job-\d\d)</a>", searched) == [f"job-{n}" for n in range(40, 50)]

    network = requests.get(base + "/dead", params={"error": "NETWORK"}, timeout=10).text
    assert "dead-net" in network and "dead-disk" not in network
    assert (
        "no dead jobs with an error containing"
        in requests.get(base + "/dead", params={"error": "quota"}, timeout=10).text
    )


def test_a_worker_credential_cancels_a_waiting_and_a_running_job_from_the_job_page(
    redis_server, pool_name, pool_users, start_ui
):
    worker = SyncQueue(pool_users.url("worker"), "it", pool_name)
    try:
        worker.submit_many([1, 2, 3], ["run-c", "wait-c", "later-c"])
        [running] = worker.fetch("ui-test-worker", 1, 0)
        assert running.id == "run-c"
        worker.submit(4, "sched-c", due="+3600000")
        ui = start_ui(pool_users.url("worker"), [pool_name])
        url = f"{ui.base}pools/it/{pool_name}/"
        page = requests.get(url + "job", params={"id": "wait-c"}, timeout=10).text
        [cancel_token] = tokens(page, "cancel")
        assert 'class="cancel"' in page and "Cancel job wait-c?" in page
        assert tokens(requests.get(url + "job", params={"id": "sched-c"}, timeout=10).text, "cancel")

        wrong = requests.post(
            url + "cancel",
            data={"token": tokens(page, "cancel")[0] + "0", "id": "wait-c"},
            allow_redirects=False,
            timeout=10,
        )
        assert wrong.status_code == 403
        cancelled = requests.post(
            url + "cancel",
            data={"token": cancel_token, "id": "wait-c", "back": "job"},
            allow_redirects=False,
            timeout=10,
        )
        assert (
            cancelled.status_code == 303
            and cancelled.headers["Location"] == "job?id=wait-c&done=cancelled&n=1"
        )
        shown = requests.get(url + cancelled.headers["Location"], timeout=10).text
        assert "cancelled 1 job(s): they will not run" in shown and 'id="job-state">cancelled<' in shown
        assert 'class="cancel"' not in shown, "a cancelled job offers no cancel"

        stopping = requests.post(
            url + "cancel",
            data={"token": cancel_token, "id": "run-c", "back": "job"},
            allow_redirects=False,
            timeout=10,
        )
        assert stopping.headers["Location"] == "job?id=run-c&done=cancelling&n=1"
        assert worker.heartbeat("ui-test-worker", [running], 1, 1) == [running.token]
        assert (worker.job("wait-c").state, worker.job("later-c").state) == ("cancelled", "waiting")
    finally:
        worker.close()
        admin = SyncQueue(redis_server.url, "it", pool_name)
        admin.delete_all()
        admin.close()


def test_a_producer_is_offered_no_cancel_and_its_forged_cancel_is_refused(pool_name, pool_users, start_ui):
    producer = SyncQueue(pool_users.url("producer"), "it", pool_name)
    try:
        producer.submit_many([1], ["wait-p"])
        ui = start_ui(pool_users.url("producer"), [pool_name])
        url = f"{ui.base}pools/it/{pool_name}/"
        page = requests.get(url + "job", params={"id": "wait-p"}, timeout=10).text
        assert 'class="cancel"' not in page and tokens(page, "cancel") == []
        forged = requests.post(
            url + "cancel",
            data={"token": f"{int(time.time())}.{'0' * 64}", "id": "wait-p"},
            allow_redirects=False,
            timeout=10,
        )
        assert forged.status_code == 403
        assert producer.stats().waiting == 1
        read_only = start_ui(pool_users.url("worker"), [pool_name], "--read-only")
        page = requests.get(
            f"{read_only.base}pools/it/{pool_name}/job", params={"id": "wait-p"}, timeout=10
        ).text
        assert 'class="cancel"' not in page
    finally:
        producer.close()


def test_the_pools_job_lists_offer_a_cancel_per_job_where_the_credential_may(
    redis_server, pool_name, pool_users, start_ui
):
    worker = SyncQueue(pool_users.url("worker"), "it", pool_name)
    try:
        worker.submit(0, "list-retry")
        [failing] = worker.fetch("ui-test-worker", 1, 0)
        assert worker.fail(failing, "boom", max_attempts=3, backoff=3600, max_backoff=3600) == "retried"
        worker.submit_many([1, 2], ["list-a", "list-b"])
        ui = start_ui(pool_users.url("worker"), [pool_name])
        page = requests.get(f"{ui.base}pools/it/{pool_name}", timeout=10).text
        assert len(tokens(page, f"{pool_name}/cancel")) == 2 and "Cancel job list-b?" in page
        assert (
            len(
                tokens(
                    requests.get(f"{ui.base}pools/it/{pool_name}?state=delayed", timeout=10).text,
                    f"{pool_name}/cancel",
                )
            )
            == 1
        )
        posted = requests.post(
            f"{ui.base}pools/it/{pool_name}/cancel",
            data={"token": tokens(page, f"{pool_name}/cancel")[0], "id": "list-b", "back": "pool"},
            allow_redirects=False,
            timeout=10,
        )
        assert (
            posted.status_code == 303 and posted.headers["Location"] == f"../{pool_name}?done=cancelled&n=1"
        )
        after = requests.get(f"{ui.base}pools/it/{pool_name}/cancel", timeout=10)  # no GET route
        assert after.status_code == 405
        shown = requests.get(f"{ui.base}pools/it/{pool_name}?done=cancelled&n=1", timeout=10).text
        assert "cancelled 1 job(s): they will not run" in shown and "list-b" not in shown
        read_only = start_ui(pool_users.url("producer"), [pool_name])
        assert (
            'class="cancel"'
            not in requests.get(f"{read_only.base}pools/it/{pool_name}?state=delayed", timeout=10).text
        )
    finally:
        worker.close()
        admin = SyncQueue(redis_server.url, "it", pool_name)
        admin.delete_all()
        admin.close()
