"""The JobPool operator: pure builders, autoscaler policy and status, wired to kopf."""
