"""The external metrics the operator serves: which pools a selector picks and what each counts."""

import pytest

from jobpool.controller.external_metrics import METRICS, metric_values, parse_selector
from jobpool.queue.base import QueueStats

POOLS = {
    ("media", "thumbs"): (QueueStats(waiting=5, in_flight=3, delayed=2, delayed_due=2), 0.0),
    ("media", "frames"): (QueueStats(waiting=1), 0.0),
    ("other", "thumbs"): (QueueStats(waiting=99), 0.0),
}


@pytest.mark.parametrize(
    "selector, expected",
    [
        ("", {}),
        ("pool=thumbs", {"pool": "thumbs"}),
        ("pool==thumbs", {"pool": "thumbs"}),
        ("pool!=thumbs", None),
        ("app=x", None),
        ("pool in (a,b)", None),
    ],
)
def test_selectors_match_pools_by_their_name_only(selector, expected):
    assert parse_selector(selector) == expected


def test_backlog_of_the_selected_pool_in_the_namespace():
    (item,) = metric_values("jobpool_backlog", "media", "pool=thumbs", POOLS)
    assert item["value"] == "10" and item["metricLabels"] == {"pool": "thumbs"}
    assert item["timestamp"] == "1970-01-01T00:00:00Z"


def test_an_empty_selector_gives_every_pool_of_the_namespace_and_nothing_else():
    items = metric_values("jobpool_queue_waiting", "media", "", POOLS)
    assert [(i["metricLabels"]["pool"], i["value"]) for i in items] == [("frames", "1"), ("thumbs", "5")]
    assert metric_values("jobpool_queue_waiting", "media", "app=x", POOLS) == []


def test_each_metric_counts_its_part_of_the_queue():
    stats = QueueStats(waiting=5, in_flight=3, delayed=2, delayed_due=2)
    later = QueueStats(delayed=4, delayed_due=1, scheduled=1000, scheduled_due=2)
    assert METRICS["jobpool_backlog"](later) == 3  # only what is due within the horizon
    assert {name: measure(stats) for name, measure in METRICS.items()} == {
        "jobpool_backlog": 10,
        "jobpool_queue_waiting": 5,
        "jobpool_queue_inflight": 3,
        "jobpool_queue_delayed": 2,
        "jobpool_queue_scheduled": 0,
    }
