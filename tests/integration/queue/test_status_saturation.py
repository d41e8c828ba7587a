"""The queue's stats are one consistent picture: jobs in flight are held by busy slots, so a status
never reads "in flight 40 ... saturation 0" (seen in `make demo-cluster`)."""

from __future__ import annotations

import time

from tests.helpers import wait_until

SLEEPY = "tests.integration.handlers:sleepy"


def test_jobs_in_flight_always_show_as_busy_slots(queue, spawn_worker, tmp_path):
    env = {"JOBPOOL_TEST_LOG": str(tmp_path / "jobs.log")}
    spawn_worker(handler=SLEEPY, concurrency=4, env=env)
    wait_until(lambda: queue.stats().total_slots == 4, what="the worker's registration")
    # One short job first: the worker has just published its busy count (1, then 0) when the burst comes.
    queue.submit_many([{"n": 0, "seconds": 0}])
    wait_until(
        lambda: (lambda s: s.succeeded == 1 and s.busy_slots == 0)(queue.stats()), what="the first job"
    )
    queue.submit_many([{"n": n, "seconds": 1.5} for n in range(1, 5)])
    samples = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        stats = queue.stats()
        samples.append((stats.in_flight, stats.busy_slots, stats.saturation))
    assert any(in_flight == 4 for in_flight, _, _ in samples), "the burst never ran"
    torn = [sample for sample in samples if sample[0] > sample[1]]
    assert not torn, (
        f"{len(torn)} of {len(samples)} stats showed more jobs in flight than busy slots: {torn[:3]}"
    )
