"""The operator's /healthz: a standby is healthy, a leader whose Lease or watch loop stalled is not."""

from jobpool.controller.health import health_report


def test_a_standby_is_healthy():
    assert health_report(
        leading=False, renewed_ago=None, watching=False, watch_ended=False, stale_after=5.0
    ) == {"status": "ok", "role": "standby"}


def test_a_leader_renewing_its_lease_and_watching_is_healthy():
    assert health_report(
        leading=True, renewed_ago=1.0, watching=True, watch_ended=False, stale_after=5.0
    ) == {"status": "ok", "role": "leader", "watching": True}


def test_a_stale_lease_or_an_ended_watch_loop_fails():
    report = health_report(leading=True, renewed_ago=6.25, watching=True, watch_ended=True, stale_after=5.0)
    assert report["status"] == "failing" and report["watching"] is False
    assert report["problems"] == [
        "the leader Lease was last renewed 6.2s ago (every 2s expected)",
        "the watch loop (kopf) has ended",
    ]
