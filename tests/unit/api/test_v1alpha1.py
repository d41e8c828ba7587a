"""The pydantic models: the defaults and rules of the README's "The CRD", which the CRD's CEL mirrors."""

import pytest
from pydantic import ValidationError

from jobpool.api import JobPoolSpec, JobsSpec
from tests.unit.factories import spec


def test_defaults_match_the_design():
    s = spec()
    assert (s.parallelism, s.concurrency, s.timeout_seconds, s.drain_seconds) == (1, 1, 600, 60)
    assert s.queue.url is None and s.queue.max_length == 100000
    assert (s.retry.max_attempts, s.retry.backoff_seconds, s.retry.max_backoff_seconds) == (3, 1.0, 300.0)
    a = s.autoscaling
    assert (
        a.enabled,
        a.min_workers,
        a.max_workers,
        a.target_backlog_per_worker,
        a.scale_down_delay_seconds,
    ) == (False, 0, 10, None, 30)
    assert s.jobs is None


def test_camel_case_on_the_wire():
    s = spec(autoscaling={"enabled": True, "minWorkers": 2, "maxWorkers": 5, "targetBacklogPerWorker": 8})
    assert s.autoscaling.min_workers == 2 and s.autoscaling.target_backlog_per_worker == 8
    assert s.model_dump(by_alias=True)["autoscaling"]["scaleDownDelaySeconds"] == 30


@pytest.mark.parametrize(
    "worker, message",
    [
        ({"image": "a", "handler": "m:f", "command": ["x"]}, "set exactly one of handler and command"),
        ({"image": "a"}, "set exactly one of handler and command"),
    ],
)
def test_exactly_one_of_handler_and_command(worker, message):
    with pytest.raises(ValidationError, match=message):
        JobPoolSpec.model_validate({"worker": worker})


def test_min_workers_above_max_is_refused():
    with pytest.raises(ValidationError, match="minWorkers must be <= maxWorkers"):
        spec(autoscaling={"minWorkers": 5, "maxWorkers": 2})


@pytest.mark.parametrize("concurrency", [0, 1025])
def test_concurrency_bounds(concurrency):
    with pytest.raises(ValidationError, match="concurrency"):
        spec(concurrency=concurrency)


def test_unknown_field_is_refused():
    with pytest.raises(ValidationError, match="paralelism"):
        spec(paralelism=3)


def test_queue_url_and_secret_ref_are_exclusive():
    with pytest.raises(ValidationError, match="at most one of url and urlSecretRef"):
        spec(queue={"url": "redis://x", "urlSecretRef": {"name": "s", "key": "k"}})


def test_batch_from_items_and_range():
    items = JobsSpec.model_validate({"items": [{"src": "a"}, {"src": "b"}, 3]})
    assert items.total == 3 and items.payloads(1, 10) == [{"src": "b"}, 3]
    rng = JobsSpec.model_validate({"range": {"start": 10, "count": 5}})
    assert rng.total == 5 and rng.payloads(0, 2) == [10, 11] and rng.payloads(3, 99) == [13, 14]
    with pytest.raises(ValidationError, match="exactly one of items and range"):
        JobsSpec.model_validate({"items": [1], "range": {"count": 1}})
    with pytest.raises(ValidationError, match="count"):
        JobsSpec.model_validate({"range": {"count": -1}})


@pytest.mark.parametrize("handler", ["tasks.", "app:", ":f", "app tasks:f", "1app:f", "a:b:c", "m:f\n"])
def test_a_malformed_handler_is_refused_naming_the_field(handler):
    with pytest.raises(ValidationError, match=r"worker\.handler") as caught:
        spec(worker={"image": "a", "handler": handler})
    assert caught.value.errors()[0]["loc"] == ("worker", "handler")


@pytest.mark.parametrize("handler", ["m:f", "pkg.mod:Class.method", "_private.mod:_f2"])
def test_module_function_handlers_are_accepted(handler):
    assert spec(worker={"image": "a", "handler": handler}).worker.handler == handler


@pytest.mark.parametrize("url", ["http://x", "localhost:6379", "sk-live-ABCDEF", "REDIS://h", " redis://h"])
def test_a_queue_url_without_a_redis_scheme_is_refused_naming_the_field(url):
    with pytest.raises(ValidationError) as caught:
        spec(queue={"url": url})
    assert caught.value.errors()[0]["loc"] == ("queue", "url")


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://:pw@h/1", "unix:///run/redis.sock"])
def test_redis_queue_urls_are_accepted(url):
    assert spec(queue={"url": url}).queue.url == url
