"""What the web UI's tests share: a pool's own Redis users, a `jobpool ui` process, a browser."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port, stop_process, wait_until
from tests.integration.queue.test_acl import (
    PoolUsers,  # the library and a pool's users, as the operator makes them
)

HANDLER = "tests.integration.ui.handlers:work_or_fail"


@pytest.fixture
def pool_users(redis_server, pool_name):
    users = PoolUsers(redis_server, "it", pool_name)
    yield users
    users.delete()


class UiProcess:
    """`jobpool ui` as a user runs it, its log in a file."""

    def __init__(self, url: str, namespace: str, pools: list[str], log_path: Path, *extra: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        argv = [
            sys.executable,
            "-m",
            "jobpool.cli",
            "ui",
            "--queue",
            url,
            "--namespace",
            namespace,
            "--listen",
            f"127.0.0.1:{self.port}",
            *extra,
        ]
        for pool in pools:
            argv += ["--pool", pool]
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=log_path.open("w"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wait_until(self._healthy, timeout=20, what=f"jobpool ui on port {self.port}")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"jobpool ui exited with {self.process.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(self.base + "healthz", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process, timeout=10)


@pytest.fixture
def start_ui(tmp_path):
    started: list[UiProcess] = []

    def start(url: str, pools: list[str], *extra: str, namespace: str = "it") -> UiProcess:
        ui = UiProcess(url, namespace, pools, tmp_path / f"ui-{len(started)}.log", *extra)
        started.append(ui)
        return ui

    yield start
    for ui in started:
        ui.stop()


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium, headless, driven by chromedriver through Selenium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        reason = "chromium and chromedriver are not installed: run `make browser`"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,900",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
