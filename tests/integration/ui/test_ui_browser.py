"""The web page in a real browser (Debian's chromium through chromedriver), against a real
redis-server and real `jobpool worker` processes, under the pool's own Redis users."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.helpers import SyncQueue, wait_until
from tests.integration.ui.conftest import HANDLER

pytestmark = pytest.mark.browser
ERROR = '<script>document.title="owned"</script> the thumbnail <b>broke</b>'


def cell(browser, pool: str, field: str) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, f'tr[data-pool="it/{pool}"] [data-field="{field}"]').text


def screenshot(browser, name: str, tmp_path: Path) -> None:
    """Into JOBPOOL_UI_SCREENSHOTS (`make ui-screenshots` sets docs/), else the test's tmp dir."""
    directory = Path(os.environ.get("JOBPOOL_UI_SCREENSHOTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(directory / name))


def test_an_operator_watches_a_pool_drain_reads_a_dead_job_and_replays_it(
    browser, pool_name, pool_users, start_ui, spawn_worker, tmp_path
):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    fixed = tmp_path / "fixed"  # the failing job succeeds once this exists
    producer = SyncQueue(pool_users.url("producer"), "it", pool_name)
    producer.submit_many(
        [{"n": n, "seconds": 0.1} for n in range(40)]
        + [{"n": "find", "seconds": 0.1}, {"fail": ERROR, "unless": str(fixed)}],
        [*(f"thumb-{n}" for n in range(40)), "find-me", "bad-1"],
    )
    ui = start_ui(pool_users.url("worker"), [pool_name], "--refresh", "0.5")

    # the pools page: the backlog as the live figures show it
    browser.get(ui.base)
    wait_until(lambda: cell(browser, pool_name, "backlog") == "42", timeout=10, what="a backlog of 42")

    # search a job id on the pool's page and open it
    browser.find_element(By.LINK_TEXT, pool_name).click()
    search = browser.find_element(By.CSS_SELECTOR, "form.search input[name=q]")
    search.send_keys("find-me")
    search.submit()
    wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, "p.found a"),
        timeout=10,
        what="the search's answer (the page after the form's submit)",
    )[0].click()
    assert browser.find_element(By.ID, "job-state").text == "waiting"
    assert '"n": "find"' in browser.find_element(By.CSS_SELECTOR, "pre.payload").text

    # workers start: the backlog falls on the open page, without a reload
    browser.get(ui.base)
    seen = [int(cell(browser, pool_name, "backlog"))]
    spawn_worker(url=pool_users.url("worker"), handler=HANDLER, concurrency=2, max_attempts=1)

    def drained() -> bool:
        value = int(cell(browser, pool_name, "backlog"))
        if value != seen[-1]:
            seen.append(value)
        return value == 0

    wait_until(drained, timeout=60, interval=0.1, what="the backlog on the page to fall to 0")
    assert len(seen) >= 3 and seen == sorted(seen, reverse=True), seen
    wait_until(lambda: cell(browser, pool_name, "deadLetter") == "1", timeout=10, what="one dead job")
    screenshot(browser, "ui-pools.png", tmp_path)

    # the dead job: its error is text, not markup that runs
    browser.get(f"{ui.base}pools/it/{pool_name}/dead")
    browser.find_element(By.LINK_TEXT, "bad-1").click()
    error = browser.find_element(By.ID, "job-error").text
    assert error.startswith(f"ValueError: {ERROR}") and "Traceback" in error
    assert browser.title != "owned" and not browser.find_elements(By.CSS_SELECTOR, "pre b")
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    screenshot(browser, "ui-dead-job.png", tmp_path)

    # replay it once the cause is fixed: it runs again and succeeds
    fixed.write_text("yes")
    browser.find_element(By.CSS_SELECTOR, "button.replay").click()
    wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, "p.flash"),
        timeout=10,
        what=f"the replay's outcome; the page: {browser.current_url}",
    )
    assert "replayed 1 dead job(s)" in browser.find_element(By.CSS_SELECTOR, "p.flash").text

    def succeeded() -> bool:
        browser.refresh()
        return browser.find_element(By.ID, "job-state").text == "succeeded"

    wait_until(succeeded, timeout=30, interval=0.3, what="the replayed job to succeed")
    assert '"done": null' in browser.find_element(By.ID, "job-result").text
    browser.get(f"{ui.base}pools/it/{pool_name}?state=succeeded")
    assert browser.find_elements(By.LINK_TEXT, "bad-1") and browser.find_elements(By.LINK_TEXT, "thumb-0")
    figure = '.figures [data-field="deadLetter"]'
    wait_until(
        lambda: browser.find_element(By.CSS_SELECTOR, figure).text == "0",
        timeout=10,
        what="no dead job on the pool's live figures",
    )
    screenshot(browser, "ui-pool.png", tmp_path)
    producer.close()


def test_a_producers_page_has_no_purge_and_refuses_a_forged_post(
    browser, redis_server, pool_name, pool_users, start_ui, spawn_worker, tmp_path
):
    from selenium.webdriver.common.by import By

    producer = SyncQueue(pool_users.url("producer"), "it", pool_name)
    producer.submit_many([{"fail": "broken", "unless": str(tmp_path / "never")}], ["bad-2"])
    spawn_worker(url=pool_users.url("worker"), handler=HANDLER, max_attempts=1)
    wait_until(lambda: producer.stats().dead_letter == 1, timeout=30, what="a dead job")
    ui = start_ui(pool_users.url("producer"), [pool_name])

    browser.get(f"{ui.base}pools/it/{pool_name}/dead")
    # a producer reads no dead letter's payload or error (its XREAD reaches only the results)
    assert "this credential may not read the dead letters" in browser.page_source
    assert not browser.find_elements(By.LINK_TEXT, "bad-2")
    assert not browser.find_elements(By.CSS_SELECTOR, "button.purge, button.replay")
    # a POST the page never offered, sent from the page itself (same origin, no token)
    for action in ("purge", "replay"):
        status = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {method: 'POST', body: new URLSearchParams("
            "{id: 'bad-2', all: '1', confirm: 'yes', token: '1.forged'})}).then(r => done(r.status));",
            f"{ui.base}pools/it/{pool_name}/{action}",
        )
        assert status == 403, action
    assert producer.stats().dead_letter == 1
    producer.close()


def test_twenty_tabs_share_one_stream_and_cost_redis_what_one_tab_does(browser, start_ui):
    """20 real tabs on a pool: every tab's figures stay live through one shared stream (a browser
    allows 6 connections to a server, so a stream per tab would stall the seventh), and the
    Redis commands per second stay at one refresh's worth."""
    import redis as redis_sync

    from tests.fixtures.redis import running_redis
    from tests.integration.ui.test_ui_pages import _commands, assert_one_refresh_worth

    refresh, span = 0.5, 3.0
    with running_redis() as server:
        admin = redis_sync.Redis.from_url(server.url)
        queue = SyncQueue(server.url, "it", "tabs")
        queue.submit_many(list(range(5)))
        ui = start_ui(server.url, ["tabs"], "--refresh", str(refresh))
        first = browser.current_window_handle
        tabs = []
        try:

            def measure() -> tuple[int, int]:
                marks = {}
                for handle in tabs:
                    browser.switch_to.window(handle)
                    marks[handle] = browser.execute_script("return document.body.dataset.updated")
                admin.config_resetstat()
                time.sleep(span)  # the measured window: a count over a fixed span, not a timed assertion
                calls = _commands(admin)
                for handle in tabs:  # every tab was updated during the window
                    browser.switch_to.window(handle)
                    assert browser.execute_script("return document.body.dataset.updated") != marks[handle]
                return calls

            def open_tab() -> None:
                browser.switch_to.new_window("tab")
                browser.get(ui.base)
                tabs.append(browser.current_window_handle)
                wait_until(
                    lambda: browser.execute_script("return document.body.dataset.updated"),
                    timeout=15,
                    what=f"live figures in tab {len(tabs)}",
                )

            open_tab()
            alone = measure()
            for _ in range(19):
                open_tab()
            assert len(tabs) == 20
            wait_until(
                lambda: browser.execute_script("return document.body.dataset.streams") == "1",
                timeout=10,
                what="one stream for all 20 tabs",
            )
            crowded = measure()
        finally:
            for handle in tabs:
                browser.switch_to.window(handle)
                browser.close()
            browser.switch_to.window(first)
            queue.delete_all()
            queue.close()
            admin.close()
    print(
        f"Redis commands (refreshes) in {span}s at a {refresh}s refresh: {alone} with 1 tab open, {crowded} with 20"
    )
    assert_one_refresh_worth(alone, crowded, span, refresh)
