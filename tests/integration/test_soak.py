"""The short chaos soak (`make soak` runs the long one): 1,500 jobs through real workers that
are killed (SIGKILL) and stopped (SIGTERM), a Redis restart (AOF, appendfsync always) and
malformed entries written by a foreign producer, scheduled jobs and jobs cancelled while they
wait or run; nothing is lost, nothing is left behind, no cancelled job starts after its cancel."""

from __future__ import annotations

import pytest

from bench.soak import MALFORMED_ENTRIES, run_soak

pytestmark = pytest.mark.slow


def test_a_short_chaos_soak_loses_nothing_and_leaves_no_worker_running(tmp_path):
    report = run_soak(
        jobs=1500, workers=3, concurrency=8, seed=1, directory=tmp_path, timeout=240, say=lambda line: None
    )
    assert report.ok, "\n".join(report.lines())
    assert (report.kills, report.terms, report.redis_restarts) == (3, 6, 1)
    assert report.results == 1500 and report.dead_letters == report.malformed >= len(MALFORMED_ENTRIES)
    assert report.workers_left == []
    assert report.scheduled > 0 and report.cancelled > 0 and report.cancels.get("cancelled", 0) > 0
    assert report.cancel_job_starts > 0, (
        "the check that no cancelled job starts after its cancel saw no start"
    )
