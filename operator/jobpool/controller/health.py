"""What the operator's `/healthz` says: 503 once its leader Lease has gone unrenewed past a few
renewal periods, or its watch loop (kopf) ended, so the kubelet restarts a wedged operator
(liveness) and its Service stops sending to it (readiness). A standby waiting for the Lease is
healthy: it is ready to take over."""

from __future__ import annotations

from typing import Any


def health_report(
    *, leading: bool, renewed_ago: float | None, watching: bool, watch_ended: bool, stale_after: float
) -> dict[str, Any]:
    """Pure: the /healthz body; `status` is "ok" or "failing" (503)."""
    if not leading:
        return {"status": "ok", "role": "standby"}
    problems = []
    if renewed_ago is None or renewed_ago > stale_after:
        ago = "never" if renewed_ago is None else f"{renewed_ago:.1f}s ago"
        problems.append(f"the leader Lease was last renewed {ago} (every {stale_after / 2.5:.0f}s expected)")
    if watch_ended:
        problems.append("the watch loop (kopf) has ended")
    report: dict[str, Any] = {
        "status": "failing" if problems else "ok",
        "role": "leader",
        "watching": watching and not watch_ended,
    }
    if problems:
        report["problems"] = problems
    return report
