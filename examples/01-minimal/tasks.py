"""Handlers of the examples: plain functions of one JSON payload."""
import time


def square(payload):
    """The result of a job is its return value."""
    return payload * payload


def resize(payload):
    """Stands in for real work on {"src": ...} payloads."""
    time.sleep(float(payload.get("seconds", 0.01)))
    return {"src": payload["src"], "thumbnail": payload["src"].rsplit(".", 1)[0] + "-small.png"}


def slow(payload):
    """Holds a job slot for `payload` seconds (used to watch saturation and scaling)."""
    time.sleep(float(payload))
    return payload
