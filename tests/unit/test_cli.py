"""Pure parts of the CLI: JSON Lines input, the status table, the progress bar."""
from __future__ import annotations

import io

import pytest

from jobpool._progress import Progress
from jobpool.cli import UsageError, format_status, parse_json_lines, parse_payload_flags, \
    split_command
from jobpool.queue import QueueStats, WorkerInfo


def test_json_lines_skip_blank_lines():
    assert parse_json_lines(['{"a": 1}\n', "\n", "2\n", '"x"'], "jobs.jsonl") == [
        ("jobs.jsonl line 1", {"a": 1}), ("jobs.jsonl line 3", 2), ("jobs.jsonl line 4", "x")]


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
        ["worker", "--command"], ["/app/x", "--fast"])
    assert split_command(["status", "p"]) == (["status", "p"], None)


def test_the_status_table_shows_every_counter_and_each_worker():
    stats = QueueStats(waiting=120, in_flight=8, delayed=3, dead_letter=1, submitted=1000,
                       succeeded=868, retried=5, dead_lettered=1,
                       workers=(WorkerInfo("pod-a", 4, 4, 0.0), WorkerInfo("pod-b", 4, 4, 0.0)))
    table = format_status("media", "thumbnails", stats)
    assert "pool      media/thumbnails" in table
    assert "waiting 120  inFlight 8  delayed 3  deadLetter 1" in table
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
