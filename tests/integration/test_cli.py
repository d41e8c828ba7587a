"""`jobpool submit | status | results | dlq` in process against a real redis-server."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys

import pytest
import yaml

import jobpool
from jobpool.cli import main
from tests.helpers import ROOT


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pool_args(redis_server, pool_name):
    return ["--queue", redis_server.url, "--namespace", "it", pool_name]


def test_submit_prints_ids_and_status_json_has_the_documented_keys(capsys, pool_args, queue, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"src": "a.png"}\n\n{"src": "b.png"}\n')
    code, out, _ = run(capsys, "submit", *pool_args, "--file", str(jobs), "--payload", "3", "--id", "first")
    assert code == 0
    ids = out.split()
    assert len(ids) == 3 and ids[0] == "first"
    code, out, _ = run(capsys, "status", *pool_args, "--output", "json")
    status = json.loads(out)
    assert list(status) == [
        "waiting",
        "inFlight",
        "delayed",
        "scheduled",
        "deadLetter",
        "waitingByPriority",
        "submitted",
        "succeeded",
        "retried",
        "deadLettered",
        "permanent",
        "cancelled",
        "workers",
        "busySlots",
        "totalSlots",
        "saturation",
        "progress",
    ]
    assert (status["waiting"], status["submitted"]) == (3, 3)
    code, out, _ = run(capsys, "status", *pool_args)
    assert "waiting 3" in out


def test_a_malformed_line_submits_nothing_and_names_the_line(capsys, pool_args, queue, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"ok": 1}\n{"ok": 2}\n{"ok": \n')
    code, out, err = run(capsys, "submit", *pool_args, "--file", str(jobs))
    assert code == 2 and out == ""
    assert err.startswith(f"jobpool submit: error: {jobs} line 3 is not valid JSON")
    assert err.count("\n") == 1
    assert queue.stats().submitted == 0


def test_submit_reads_stdin(capsys, pool_args, queue, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("1\n2\n"))
    code, out, _ = run(capsys, "submit", *pool_args, "--file", "-")
    assert code == 0 and len(out.split()) == 2


def test_submit_without_waiting_fails_clearly_when_the_queue_is_full(capsys, pool_args, queue):
    queue.configure(max_length=1)
    assert run(capsys, "submit", *pool_args, "--payload", "1")[0] == 0
    code, _, err = run(capsys, "submit", *pool_args, "--payload", "2", "--no-wait")
    assert code == 1 and "is full" in err and "maxLength" in err


def test_a_submit_that_fills_the_queue_part_way_prints_the_ids_it_enqueued(
    capsys, pool_args, queue, tmp_path
):
    queue.configure(max_length=1500)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(f"{n}\n" for n in range(2500)))
    code, out, err = run(capsys, "submit", *pool_args, "--file", str(jobs), "--no-wait")
    assert code == 1 and "is full" in err and "submitted 1000 of 2500" in err
    printed = out.split()
    assert len(printed) == 1000
    fetched = queue.fetch("checker", 2000, 0)
    assert [job.id for job in fetched] == printed
    assert [job.payload for job in fetched] == list(range(1000))


def test_results_and_dead_letters(capsys, pool_args, queue):
    queue.submit_many(["good", "bad"], ["good", "bad"])
    good, bad = queue.fetch("c", 2, 0)
    queue.ack_many([(good, {"size": 3})])
    queue.fail(bad, "ValueError: bad input", max_attempts=1, backoff=0, max_backoff=0)
    code, out, _ = run(capsys, "results", *pool_args)
    assert [json.loads(line) for line in out.splitlines()] == [
        {"id": "good", "result": {"size": 3}, "attempts": 1}
    ]
    code, out, _ = run(capsys, "dlq", "list", *pool_args)
    [dead] = [json.loads(line) for line in out.splitlines()]
    assert (dead["id"], dead["payload"], dead["attempts"], dead["error"]) == (
        "bad",
        "bad",
        1,
        "ValueError: bad input",
    )
    code, _, err = run(capsys, "dlq", "replay", *pool_args)
    assert code == 2 and "give --id ID (repeatable) or --all" in err
    assert run(capsys, "dlq", "replay", *pool_args, "--id", "bad")[1] == "replayed 1 dead jobs\n"
    assert queue.stats().waiting == 1
    [again] = queue.fetch("c", 1, 0)
    queue.fail(again, "still bad", max_attempts=1, backoff=0, max_backoff=0)
    assert run(capsys, "dlq", "purge", *pool_args, "--all")[1] == "purged 1 dead jobs\n"
    assert queue.stats().dead_letter == 0


def test_a_bad_url_and_an_unreachable_queue_are_one_line_errors(capsys, pool_name):
    code, _, err = run(capsys, "status", "--queue", "http://nowhere", pool_name)
    assert code == 1 and err.count("\n") == 1
    assert "invalid queue URL 'http://nowhere': unknown scheme 'http'" in err
    code, _, err = run(capsys, "submit", "--queue", "redis://127.0.0.1:1/0", pool_name, "--payload", "1")
    assert code == 1 and err.count("\n") == 1
    assert "cannot reach the queue at redis://127.0.0.1:1/0" in err


def test_queue_and_pool_come_from_the_environment(capsys, redis_server, pool_name, queue, monkeypatch):
    monkeypatch.setenv("JOBPOOL_QUEUE_URL", redis_server.url)
    monkeypatch.setenv("JOBPOOL_NAMESPACE", "it")
    monkeypatch.setenv("JOBPOOL_POOL", pool_name)
    assert run(capsys, "submit", "--payload", "1")[0] == 0
    assert queue.stats().submitted == 1
    monkeypatch.delenv("JOBPOOL_QUEUE_URL")
    code, _, err = run(capsys, "status")
    assert code == 2 and "no queue URL: give --queue URL or set JOBPOOL_QUEUE_URL" in err


def test_worker_flags_errors_are_one_line(capsys):
    code, _, err = run(capsys, "worker", "--queue", "redis://h", "--pool", "p")
    assert code == 2 and "exactly one of --handler" in err
    code, _, err = run(
        capsys, "worker", "--queue", "redis://h", "--pool", "p", "--handler", "no_such_module:f"
    )
    assert code == 2 and "cannot import 'no_such_module'" in err


def test_results_follow_prints_new_results_as_they_finish(redis_server, pool_name, queue):
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobpool.cli",
            "results",
            "--queue",
            redis_server.url,
            "--namespace",
            "it",
            pool_name,
            "--follow",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        queue.submit_many(["a", "b"], ["a", "b"])
        lines = []
        for job in queue.fetch("c", 2, 0):
            queue.ack_many([(job, job.payload.upper())])
            lines.append(follower.stdout.readline())
        assert [json.loads(line) for line in lines] == [
            {"id": "a", "result": "A", "attempts": 1},
            {"id": "b", "result": "B", "attempts": 1},
        ]
        assert follower.poll() is None  # still following
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def test_the_operator_command_is_dispatched_to_the_operator(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "jobpool.cli", "operator", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "--default-queue" in done.stdout and "--all-namespaces" in done.stdout


def test_a_long_submit_draws_a_progress_bar_on_a_terminal(redis_server, pool_name, queue, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(f"{n}\n" for n in range(5000)))
    leader, follower = pty.openpty()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobpool.cli",
            "submit",
            "--queue",
            redis_server.url,
            "--namespace",
            "it",
            pool_name,
            "--file",
            str(jobs),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=follower,
        timeout=60,
    )
    os.close(follower)
    terminal = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    os.close(leader)
    assert done.returncode == 0 and len(done.stdout.split()) == 5000
    assert b"submit [##############################] 5,000/5,000 100%" in terminal
    assert queue.stats().submitted == 5000


def test_commands_print_nothing_on_stderr_even_with_warnings_as_errors(redis_server, pool_name):
    """A dependency's new warning (redis-py 8 warned on every command) must fail here, not reach
    every user's terminal: each command runs with `-W error` and must leave stderr empty."""
    base = ["--queue", redis_server.url, "--namespace", "it", pool_name]
    for argv in (
        ["submit", *base, "--payload", "1"],
        ["status", *base],
        ["results", *base],
        ["dlq", "list", *base],
    ):
        done = subprocess.run(
            [sys.executable, "-W", "error", "-m", "jobpool.cli", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode, done.stderr) == (0, ""), argv


# -- kubectl habits ---------------------------------------------------------------------------
def test_short_namespace_and_yaml_output_on_every_data_command(capsys, redis_server, pool_name, queue):
    short = ["--queue", redis_server.url, "-n", "it", pool_name]
    code, out, _ = run(capsys, "submit", *short, "--payload", '"a"', "--id", "a", "-o", "yaml")
    assert code == 0 and yaml.safe_load(out) == ["a"]
    code, out, _ = run(capsys, "status", *short, "-o", "yaml")
    assert code == 0 and yaml.safe_load(out)["waiting"] == 1
    [job] = queue.fetch("c", 1, 0)
    queue.fail(job, "boom", max_attempts=1, backoff=0, max_backoff=0)
    code, out, _ = run(capsys, "dlq", "list", *short, "-o", "yaml")
    [dead] = yaml.safe_load(out)
    assert (dead["id"], dead["error"]) == ("a", "boom")
    code, out, _ = run(capsys, "dlq", "replay", *short, "--id", "a", "-o", "json")
    assert code == 0 and json.loads(out) == {"replayed": 1}
    [job] = queue.fetch("c", 1, 0)
    queue.ack_many([(job, {"n": 1})])
    code, out, _ = run(capsys, "results", *short, "-o", "json")
    assert code == 0 and json.loads(out) == [{"id": "a", "result": {"n": 1}, "attempts": 1}]
    code, _, err = run(capsys, "results", *short, "-o", "yaml", "--follow")
    assert code == 2 and "--follow prints JSON Lines" in err


def test_a_pool_the_queue_never_saw_is_not_found(capsys, redis_server, pool_name):
    for command in (["status"], ["results"], ["dlq", "list"]):
        code, out, err = run(capsys, *command, "--queue", redis_server.url, "-n", "it", "nosuch" + pool_name)
        assert (code, out) == (1, ""), command
        assert err.splitlines() == [
            f"jobpool {' '.join(command)}: error: pool it/nosuch{pool_name} not found at "
            f"{redis_server.url}: it holds no job, worker or dead letter of it (check -n and the "
            f"pool's name)"
        ]


def test_replaying_or_purging_an_unknown_dead_job_is_not_found(capsys, pool_args, queue):
    queue.submit_many(["x"], ["dead-one"])
    [job] = queue.fetch("c", 1, 0)
    queue.fail(job, "boom", max_attempts=1, backoff=0, max_backoff=0)
    code, out, err = run(capsys, "dlq", "replay", *pool_args, "--id", "nope")
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"jobpool dlq replay: error: no dead job 'nope' in pool it/{pool_args[-1]}"]
    # the known one is replayed, the unknown one named, as `kubectl delete a b` does
    code, out, err = run(capsys, "dlq", "purge", *pool_args, "--id", "dead-one", "--id", "nope")
    assert code == 1 and out == "purged 1 dead jobs\n" and "no dead job 'nope'" in err
    assert queue.stats().dead_letter == 0


def test_version_as_a_command_and_a_flag(capsys):
    code, out, _ = run(capsys, "version", "-o", "yaml")
    assert code == 0 and yaml.safe_load(out)["version"] == jobpool.__version__
    done = subprocess.run(
        [sys.executable, "-m", "jobpool.cli", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, f"jobpool {jobpool.__version__}\n")


def test_bash_completion_completes_commands_flags_and_choices(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "jobpool").write_text(f'#!/bin/sh\nexec {sys.executable} -m jobpool.cli "$@"\n')
    (bin_dir / "jobpool").chmod(0o755)
    script = subprocess.run(
        [sys.executable, "-m", "jobpool.cli", "completion", "bash"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def complete(*words: str) -> list[str]:
        probe = (
            script + f"COMP_WORDS=(jobpool {' '.join(words)}); "
            f"COMP_CWORD={len(words)}; _jobpool; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        )
        done = subprocess.run(
            ["bash", "-c", probe],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
            timeout=60,
        )
        return done.stdout.split()

    assert complete("sta") == ["status"]
    assert complete("status", "-o", "y") == ["yaml"]
    assert complete("dlq", "re") == ["replay"]
    assert complete("submit", "--no") == ["--no-wait"]
