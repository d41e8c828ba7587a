"""Pure parts of the CLI: JSON Lines input, the status table, the progress bar."""

from __future__ import annotations

import io

import pytest

from jobpool._progress import Progress
from jobpool.cli import UsageError, format_status, parse_json_lines, parse_payload_flags, split_command
from jobpool.queue import QueueStats, WorkerInfo


def test_json_lines_skip_blank_lines():
    assert parse_json_lines(['{"a": 1}\n', "\n", "2\n", '"x"'], "jobs.jsonl") == [
        ("jobs.jsonl line 1", {"a": 1}),
        ("jobs.jsonl line 3", 2),
        ("jobs.jsonl line 4", "x"),
    ]


def test_a_malformed_line_is_named_with_its_number():
    with pytest.raises(UsageError) as caught:
        parse_json_lines(["1\n", "\n", "{oops\n", "4\n"], "jobs.jsonl")
    message = str(caught.value)
    assert message.startswith("jobs.jsonl line 3 is not valid JSON")
    assert message.endswith("nothing was submitted") and "\n" not in message


def test_a_malformed_payload_flag_is_named_with_its_position():
    with pytest.raises(UsageError, match=r"--payload #2 'nope' is not valid JSON"):
        parse_payload_flags(["1", "nope"])


def test_the_command_of_a_worker_follows_the_double_dash():
    assert split_command(["worker", "--command", "--", "/app/x", "--fast"]) == (
        ["worker", "--command"],
        ["/app/x", "--fast"],
    )
    assert split_command(["status", "p"]) == (["status", "p"], None)


def test_the_status_table_shows_every_counter_and_each_worker():
    stats = QueueStats(
        waiting=120,
        in_flight=8,
        delayed=3,
        dead_letter=1,
        submitted=1000,
        succeeded=868,
        retried=5,
        dead_lettered=1,
        workers=(WorkerInfo("pod-a", 4, 4, 0.0), WorkerInfo("pod-b", 4, 4, 0.0)),
    )
    table = format_status("media", "thumbnails", stats)
    assert "pool      media/thumbnails" in table
    assert "waiting 120  inFlight 8  delayed 3  scheduled 0  deadLetter 1" in table
    assert "submitted 1000  succeeded 868  retried 5  deadLettered 1" in table
    assert "workers   2  busySlots 8/8  saturation 1.00" in table
    assert "pod-b  4/4 busy" in table


def test_the_progress_bar_renders_count_percent_and_rate():
    progress = Progress("submit", total=2000, stream=io.StringIO(), enabled=True)
    progress.started = 0.0
    progress.update(1000)
    assert progress.render(now=0.5, width=10) == "submit [#####-----] 1,000/2,000  50% 2,000/s"


def test_the_progress_bar_stays_silent_off_a_terminal():
    stream = io.StringIO()
    progress = Progress("submit", total=10, stream=stream)
    progress.update(10)
    progress.close()
    assert stream.getvalue() == ""


# -- kubectl habits: -o yaml, completion, where the queue is ------------------------------------
import argparse  # noqa: E402

import yaml  # noqa: E402
from hypothesis import example, given, strategies as st  # noqa: E402

from jobpool._output import to_yaml  # noqa: E402
from jobpool.cli import build_parser, candidates, cluster_mode  # noqa: E402
from jobpool.cluster import ClusterError, QueueSource, queue_source, replace_host, service_of  # noqa: E402

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
@example({"\u2028": 0})  # a YAML line break inside a quoted key or value (found by the property)
@example(["a\u2029b"])
def test_the_yaml_output_reads_back_as_the_same_value(value):
    assert yaml.safe_load(to_yaml(value)) == value


def test_the_yaml_output_is_kubectl_block_style():
    assert to_yaml({"waiting": 3, "workers": [{"id": "pod-a", "busy": 1}], "error": "no: 1"}) == (
        'waiting: 3\nworkers:\n- id: "pod-a"\n  busy: 1\nerror: "no: 1"\n'
    )


def test_completion_offers_commands_flags_and_choices():
    parser = build_parser()
    assert candidates(parser, ["st"]) == ["status"]
    assert "__complete" not in candidates(parser, [""])
    assert candidates(parser, ["status", "--na"]) == ["--namespace"]
    assert candidates(parser, ["status", "-o", ""]) == ["table", "json", "yaml"]
    assert candidates(parser, ["dlq", ""]) == ["list", "replay", "purge"]
    assert candidates(parser, ["dlq", "replay", "-o", "y"]) == ["yaml"]
    assert candidates(parser, ["completion", ""]) == ["bash", "zsh"]
    assert "-n" in candidates(parser, ["worker", "-"])


def test_cluster_mode_is_the_default_without_a_queue_url():
    args = argparse.Namespace(queue=None, from_cluster=False)
    assert cluster_mode(args, {}) is True
    assert cluster_mode(args, {"JOBPOOL_QUEUE_URL": "redis://h"}) is False
    assert cluster_mode(argparse.Namespace(queue="redis://h", from_cluster=False), {}) is False
    assert (
        cluster_mode(argparse.Namespace(queue=None, from_cluster=True), {"JOBPOOL_QUEUE_URL": "redis://h"})
        is True
    )


def test_the_queue_of_a_pool_comes_from_its_spec_or_the_operators_secret():
    meta = {"metadata": {"name": "squares"}}
    assert queue_source({**meta, "spec": {"queue": {"url": "redis://r:6379/0"}}}, "producer") == QueueSource(
        url="redis://r:6379/0"
    )
    assert queue_source(
        {**meta, "spec": {"queue": {"urlSecretRef": {"name": "s", "key": "k"}}}}, "worker"
    ) == QueueSource(secret="s", key="k")
    assert queue_source({**meta, "spec": {}}, "producer") == QueueSource(
        secret="squares-queue-producer", managed=True
    )
    assert queue_source({**meta, "spec": {"queue": {"maxLength": 5}}}, "worker") == QueueSource(
        secret="squares-queue", managed=True
    )


def test_a_port_forward_finds_the_service_of_a_cluster_dns_name():
    assert service_of("jobpool-redis", "team-a") == ("jobpool-redis", "team-a")
    assert service_of("jobpool-redis.jobpool-system", "team-a") == ("jobpool-redis", "jobpool-system")
    assert service_of("jobpool-redis.jobpool-system.svc.cluster.local", "x") == (
        "jobpool-redis",
        "jobpool-system",
    )
    with pytest.raises(ClusterError, match="not a Service name"):
        service_of("redis.example.com", "x")
    assert (
        replace_host("redis://jobpool.a.b.worker:pw@jobpool-redis.sys.svc:6379/0", "127.0.0.1", 4242)
        == "redis://jobpool.a.b.worker:pw@127.0.0.1:4242/0"
    )
    assert replace_host("redis://r.sys:6379", "127.0.0.1", 1) == "redis://127.0.0.1:1"
