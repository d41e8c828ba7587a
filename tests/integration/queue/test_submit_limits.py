"""Names and payload sizes are checked at the door: `jobpool submit` (a real subprocess) and
the SDK refuse a pool or namespace that is no DNS-1123 label and a payload over the pool's
limit, with one line naming the value or the job, and submit nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

import jobpool
from jobpool.contract import DEFAULT_MAX_PAYLOAD_BYTES
from jobpool.queue import PayloadTooLarge, QueueError
from tests.helpers import ROOT


def jobpool_cli(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobpool.cli", *argv],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def pool_keys(redis_server, pattern: str = "*") -> list[str]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        return list(client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


@pytest.mark.parametrize(
    "flag, value",
    [("pool", "bad pool name!"), ("pool", "Thumbs"), ("pool", "x" * 64), ("namespace", "team_a")],
)
def test_submit_refuses_a_name_that_is_no_dns_label(redis_server, flag, value):
    argv = ["submit", "--queue", redis_server.url, "--payload", "1"]
    argv += [value] if flag == "pool" else ["--namespace", value, "ok-pool"]
    done = jobpool_cli(*argv)
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"jobpool submit: error: {flag} {value!r} is not a DNS-1123 label"), (
        done.stderr
    )
    assert "lowercase" in done.stderr
    assert not [k for k in pool_keys(redis_server) if value in k]


def test_the_sdk_refuses_a_name_that_is_no_dns_label(redis_server):
    with pytest.raises(QueueError, match=r"^pool 'bad pool name!' is not a DNS-1123 label"):
        jobpool.Client(redis_server.url, "default", "bad pool name!")
    with pytest.raises(QueueError, match=r"^namespace 'Media' is not a DNS-1123 label"):
        jobpool.AsyncClient(redis_server.url, "Media", "thumbs")


def test_submit_refuses_a_payload_over_the_default_limit_naming_its_line(
    redis_server, pool_name, queue, tmp_path
):
    jobs = tmp_path / "jobs.jsonl"
    big = json.dumps({"blob": "x" * DEFAULT_MAX_PAYLOAD_BYTES}, separators=(",", ":"))
    jobs.write_text(f'{{"n": 1}}\n\n{big}\n{{"n": 3}}\n')
    done = jobpool_cli(
        "submit", "--queue", redis_server.url, "--namespace", "it", pool_name, "--file", str(jobs)
    )
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(
        f"jobpool submit: error: {jobs} line 3: the payload is {len(big)} bytes, over the "
        f"pool's limit of {DEFAULT_MAX_PAYLOAD_BYTES} bytes"
    ), done.stderr
    assert "maxPayloadBytes" in done.stderr and "nothing was submitted" in done.stderr
    assert queue.stats().submitted == 0


def test_a_pool_limit_refuses_a_late_payload_of_a_long_input_before_any_is_submitted(
    redis_server, pool_name, queue
):
    queue.configure(max_length=None, max_payload_bytes=100)
    lines = [json.dumps({"n": n}) for n in range(2500)]
    lines[2200] = json.dumps({"n": 2200, "pad": "y" * 100})
    done = jobpool_cli(
        "submit",
        "--queue",
        redis_server.url,
        "--namespace",
        "it",
        pool_name,
        "--file",
        "-",
        stdin="\n".join(lines) + "\n",
    )
    assert done.returncode == 2, done
    assert done.stderr.startswith("jobpool submit: error: stdin line 2201: the payload is "), done.stderr
    assert "limit of 100 bytes" in done.stderr
    assert queue.stats().submitted == 0


def test_the_sdk_names_the_job_over_the_limit_and_the_queue_enforces_it(redis_server, pool_name, queue):
    queue.configure(max_length=None, max_payload_bytes=64)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        with pytest.raises(PayloadTooLarge) as caught:
            client.submit_many([1, "z" * 70, 3])
        assert (caught.value.index, caught.value.limit) == (1, 64)
        assert str(caught.value).startswith(
            "job 1: the payload is 72 bytes, over the pool's limit of 64 bytes"
        )
        assert client.status().submitted == 0
        assert len(client.submit_many(["z" * 62])) == 1  # 64 bytes of JSON: at the limit


def test_a_60_mb_payload_is_refused_without_being_sent_to_redis(redis_server, pool_name, queue, tmp_path):
    jobs = tmp_path / "huge.jsonl"
    jobs.write_text(json.dumps({"blob": "x" * 60_000_000}) + "\n")
    client = redis.Redis.from_url(redis_server.url)
    received = client.info("stats")["total_net_input_bytes"]
    done = jobpool_cli(
        "submit", "--queue", redis_server.url, "--namespace", "it", pool_name, "--file", str(jobs)
    )
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr.startswith(
        f"jobpool submit: error: {jobs} line 1: the payload is "
        f"60000011 bytes, over the pool's limit of 1048576 bytes"
    ), done.stderr
    assert client.info("stats")["total_net_input_bytes"] - received < 1_000_000
    client.close()
    assert queue.stats().submitted == 0
