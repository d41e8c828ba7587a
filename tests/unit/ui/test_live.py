"""The live figures: rates from counter samples, a window of history, one read for everyone."""

from __future__ import annotations

import asyncio

from jobpool.queue import QueueStats, WorkerInfo
from jobpool.ui.live import PoolHistory, Refresher, Sample, rates, summary


def test_rates_are_per_second_between_samples_and_a_reset_counter_counts_zero():
    samples = [Sample(0, 10, 0, 0), Sample(2, 6, 8, 2), Sample(4, 0, 2, 2)]
    assert rates(samples) == [(4.0, 1.0), (0.0, 0.0)]


def test_history_keeps_only_its_window_and_the_summary_has_the_status_keys():
    history = PoolHistory(window=10)
    for at in range(0, 30, 2):
        history.record(
            float(at),
            QueueStats(waiting=30 - at, succeeded=at * 3, workers=(WorkerInfo("w", 4, 2, float(at)),)),
        )
    view = summary(history)
    assert view["history"]["backlog"] == [12, 10, 8, 6, 4, 2]  # the samples of the last 10 s
    assert view["succeededPerSecond"] == 3.0
    assert view["waiting"] == 2 and view["busySlots"] == 2 and view["saturation"] == 0.5
    assert view["workerList"] == [{"id": "w", "slots": 4, "busy": 2, "lastSeen": 28.0}]


class CountingQueue:
    def __init__(self):
        self.reads = 0

    async def stats(self) -> QueueStats:
        self.reads += 1
        return QueueStats(waiting=self.reads)


def test_every_subscriber_gets_each_refresh_from_one_read_and_a_slow_one_only_the_latest():
    async def run():
        queue = CountingQueue()
        refresher = Refresher({"p": queue}, interval=1)
        subscribers = [refresher.subscribe() for _ in range(20)]
        await refresher.refresh()
        await refresher.refresh()
        assert queue.reads == 2
        for subscriber in subscribers:
            assert subscriber.qsize() == 1 and '"waiting": 2' in subscriber.get_nowait()
        await refresher.stop()
        assert all(s.get_nowait() is None for s in subscribers)

    asyncio.run(run())
