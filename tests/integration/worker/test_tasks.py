"""Several tasks per pool (README "Tasks"): real `jobpool worker` processes route jobs by their
task name; the queue refuses a task no live worker serves, or dead-letters it once."""

from __future__ import annotations

import json
import sys

import pytest

import jobpool
from jobpool.cli import main
from tests.helpers import wait_until

TASKS = "tests.integration.tasks"


def test_a_module_of_tasks_routes_each_job_by_its_task_name(redis_server, pool_name, spawn_worker, tmp_path):
    spawn_worker(handler=TASKS, concurrency=2, backoff=0.05, env={"JOBPOOL_TEST_LOG": str(tmp_path / "log")})
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        resized = client.submit({"w": 10}, task="resize")
        cropped = client.submit_many(["a.png", "b.png"], task="crop.square")
        flaky = client.submit("f", task="flaky")
        assert client.result(resized, timeout=15).result == {"resized": {"w": 10}}
        assert [client.result(i, timeout=15).result for i in cropped] == [
            {"cropped": "a.png"},
            {"cropped": "b.png"},
        ]
        result = client.result(flaky, timeout=15)
        assert (result.result, result.attempts) == ({"flaky": "f"}, 2)  # the retry kept its task


def test_a_task_no_live_worker_serves_is_refused_at_submit(redis_server, pool_name, spawn_worker, capsys):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        spawn_worker(handler=TASKS)
        wait_until(lambda: client.status().workers, timeout=15, what="the worker's registration")
        with pytest.raises(
            jobpool.UnknownTask,
            match=r"no worker of pool it/.* serves task "
            r"'helper'; its tasks: crop.square, flaky, resize",
        ):
            client.submit(1, task="helper")
        with pytest.raises(jobpool.UnknownTask):
            client.submit_many([1, 2], ["x", "y"], task="nope")
        assert client.status().submitted == 0
    code = main(
        ["submit", "--queue", redis_server.url, "-n", "it", pool_name, "--task", "nope", "--payload", "1"]
    )
    out, err = capsys.readouterr()
    assert (code, out) == (1, "") and "serves task 'nope'" in err


def test_an_unknown_task_submitted_before_any_worker_is_dead_lettered_at_once(
    redis_server, pool_name, spawn_worker, queue, capsys
):
    code = main(
        [
            "submit",
            "--queue",
            redis_server.url,
            "-n",
            "it",
            pool_name,
            "--task",
            "resize",
            "--payload",
            "1",
            "--id",
            "known",
        ]
    )
    assert (code, capsys.readouterr().out) == (0, "known\n")
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit(2, id="unknown", task="nope")
        spawn_worker(handler=TASKS, max_attempts=5)
        assert client.result("known", timeout=15).result == {"resized": 1}
        wait_until(lambda: client.status().dead_letter == 1, timeout=15, what="a dead letter")
        [dead] = client.dead_letters()
        assert (dead.id, dead.task, dead.attempts) == ("unknown", "nope", 1)
        assert "unknown task 'nope': this worker serves crop.square, flaky, resize" in dead.error
        assert (client.status().retried, client.status().permanent) == (0, 1)
    assert main(["dlq", "list", "--queue", redis_server.url, "-n", "it", pool_name, "-o", "json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["task"]) == ("unknown", "nope")


def test_an_explicit_mapping_and_the_single_function_form(redis_server, pool_name, spawn_worker):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        spawn_worker(handler=f"{TASKS}:TASKS")
        assert client.result(client.submit("Ab", task="upper"), timeout=15).result == "AB"
        assert client.result(client.submit("Ab", task="lower"), timeout=15).result == "ab"


def test_the_single_function_form_serves_jobs_without_a_task_and_by_its_name(
    redis_server, pool_name, spawn_worker
):
    spawn_worker(handler="tests.integration.handlers:echo")
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        assert client.result(client.submit(1), timeout=15).result == {"echo": 1}
        assert client.result(client.submit(2, task="echo"), timeout=15).result == {"echo": 2}


def test_a_command_gets_the_task_name_in_its_environment(redis_server, pool_name, spawn_worker):
    program = "import json,os,sys; json.load(sys.stdin); print(json.dumps(os.environ['JOBPOOL_TASK']))"
    spawn_worker(command=[sys.executable, "-c", program])
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        assert client.result(client.submit(1, task="thumbnail"), timeout=15).result == "thumbnail"
        assert client.result(client.submit(1), timeout=15).result == ""


def test_a_replayed_dead_letter_keeps_its_task(redis_server, pool_name, queue):
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        client.submit("x", id="j", task="resize")
        [job] = queue.fetch("c1", 1, 100)
        assert job.task == "resize"
        queue.fail(job, "boom", max_attempts=1, backoff=0, max_backoff=0)
        assert client.replay(["j"]) == 1
        [again] = queue.fetch("c1", 1, 100)
        assert (again.id, again.task) == ("j", "resize")
