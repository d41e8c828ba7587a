"""Which running handlers the worker's deadline sweep cancels."""

from jobpool.worker.runtime import overdue


def test_handlers_past_their_deadline_are_overdue():
    assert overdue({"a": 10.0, "b": 12.0, "c": 9.5}, set(), now=10.0) == ["a", "c"]


def test_a_handler_already_cancelled_is_not_cancelled_again():
    assert overdue({"a": 10.0, "b": 8.0}, {"b"}, now=11.0) == ["a"]


def test_nothing_is_overdue_before_its_deadline():
    assert overdue({"a": 10.0}, set(), now=9.99) == []
