"""The handler's context (README "The handler's context"): an optional second parameter with the
job's id, task, attempt, max_attempts, deadline and enqueued_at, and progress() whose last value
is stored with the running job and shown by `jobpool status`."""

from __future__ import annotations

import json
import sys
import time

import jobpool
from jobpool.cli import main
from tests.helpers import wait_until


def test_a_handler_with_a_second_parameter_gets_the_jobs_context(redis_server, pool_name, spawn_worker):
    spawn_worker(handler="tests.integration.handlers:context_echo", timeout=30, max_attempts=4)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        before = time.time()
        client.submit(1, id="ctx", task="context_echo", max_attempts=2)
        seen = client.result("ctx", timeout=15).result
        assert (seen["id"], seen["task"], seen["attempt"], seen["max_attempts"]) == (
            "ctx",
            "context_echo",
            1,
            2,
        )
        assert before - 1 <= seen["enqueued_at"] <= time.time()
        assert seen["enqueued_at"] + 30 - 1 <= seen["deadline"] <= time.time() + 30


def test_a_sync_handler_sees_its_attempt(redis_server, pool_name, spawn_worker):
    spawn_worker(handler="tests.integration.handlers:context_sync", backoff=0.05)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit(1, id="again")
        assert client.result("again", timeout=15).result == {"attempt": 2, "id": "again"}


def test_the_last_progress_of_a_running_job_is_shown_by_status(redis_server, pool_name, spawn_worker, capsys):
    spawn_worker(handler="tests.integration.handlers:progress_then_wait")
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit(3, id="long")
        wait_until(
            lambda: client.status().progress.get("long") == {"step": "resizing"},
            timeout=15,
            what="the job's progress in the status",
        )
        assert main(["status", "--queue", redis_server.url, "-n", "it", pool_name, "-o", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["progress"] == {"long": {"step": "resizing"}}
        assert client.result("long", timeout=15).result == "done"
        assert client.status().progress == {}  # a finished job's progress goes with it


def test_a_command_gets_the_jobs_id_and_attempt_in_its_environment(redis_server, pool_name, spawn_worker):
    program = (
        "import json,os,sys; json.load(sys.stdin); "
        "print(json.dumps([os.environ['JOBPOOL_JOB_ID'], os.environ['JOBPOOL_ATTEMPT']]))"
    )
    spawn_worker(command=[sys.executable, "-c", program])
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        assert client.result(client.submit(1, id="cmd"), timeout=15).result == ["cmd", "1"]


PROGRESS_SCRIPT = """#!/bin/sh
# a --command job: reports progress on stderr, waits for the test, then succeeds or fails
read payload
echo "jobpool-progress: 0.25" >&2
echo "starting $JOBPOOL_JOB_ID" >&2
echo 'jobpool-progress: {"step": "two", "of": 3}' >&2
echo "jobpool-progress: not json" >&2
i=0   # at most 30 s: it must not outlive a failed test
while [ ! -e "$1/go" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
if [ "$payload" = '"fail"' ]; then echo "it broke" >&2; exit 1; fi
echo '{"ok": true}'
"""


def test_a_command_reports_progress_on_stderr_lines_that_jobpool_job_shows(
    redis_server, pool_name, spawn_worker, tmp_path, capsys
):
    script = tmp_path / "progress.sh"
    script.write_text(PROGRESS_SCRIPT)
    script.chmod(0o755)
    spawn_worker(command=[str(script), str(tmp_path)], max_attempts=1)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit("ok", id="shell")
        client.submit("fail", id="broken")
        wait_until(
            lambda: client.job("shell").progress == {"step": "two", "of": 3},
            timeout=15,
            what="the command's last valid progress",
        )
        assert main(["job", pool_name, "shell", "--queue", redis_server.url, "-n", "it", "-o", "json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert (shown["state"], shown["progress"]) == ("running", {"step": "two", "of": 3})
        (tmp_path / "go").touch()
        assert client.result("shell", timeout=15).result == {"ok": True}
        wait_until(lambda: client.job("broken").state == "dead", timeout=15, what="the failing command dead")
        error = client.job("broken").error
    # progress lines are not part of the error; a line that is not valid progress stays in it
    assert "it broke" in error and "starting broken" in error and "jobpool-progress: not json" in error
    assert "0.25" not in error and '"step"' not in error
