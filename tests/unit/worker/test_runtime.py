"""When a worker publishes its busy-slot count between heartbeats."""

from jobpool.worker.runtime import BUSY_PUBLISH_INTERVAL, IDLE_PUBLISH_INTERVAL, busy_publish_delay


def test_an_unchanged_count_is_not_published():
    assert busy_publish_delay(3, 3, 100.0) is None


def test_a_changed_count_waits_out_the_rate_limit():
    assert busy_publish_delay(4, 3, 0.1) == BUSY_PUBLISH_INTERVAL - 0.1
    assert busy_publish_delay(4, 3, BUSY_PUBLISH_INTERVAL + 1) == 0.0


def test_becoming_idle_is_published_almost_at_once():
    assert busy_publish_delay(0, 8, 0.0) == IDLE_PUBLISH_INTERVAL
    assert busy_publish_delay(0, 8, 0.2) == 0.0


def test_the_first_count_is_published():
    assert busy_publish_delay(0, None, 0.0) == IDLE_PUBLISH_INTERVAL
