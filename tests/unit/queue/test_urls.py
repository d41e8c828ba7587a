"""Queue URLs: which are usable, and how they are shown and scrubbed without their passwords."""

from __future__ import annotations

import pytest

from jobpool.queue import QueueError
from jobpool.queue.urls import check_queue_url, queue_url_problem, redact_url, scrub_url


def test_passwords_never_appear_in_urls_shown_to_users():
    assert redact_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("redis://user:pw@host/0") == "redis://user:***@host/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
    assert redact_url("unix://:pw@/run/redis.sock?db=1") == "unix://:***@/run/redis.sock?db=1"
    assert redact_url("redis://:pw@[::1]:6379/0") == "redis://:***@[::1]:6379/0"
    assert redact_url("redis://:pw@/0") == "redis://:***@/0"


@pytest.mark.parametrize(
    "url, shown",
    [
        ("redis://h:6379/0?password=s3cret", "redis://h:6379/0?password=***"),
        (
            "redis://h/0?db=1&Password=s3cret&ssl_cert_reqs=none",
            "redis://h/0?db=1&Password=***&ssl_cert_reqs=none",
        ),
        ("rediss://u:s3cret@h/0?password=s3cret", "rediss://u:***@h/0?password=***"),
        ("redis://s3cret@h/0", "redis://***@h/0"),
    ],
)
def test_query_string_and_bare_userinfo_passwords_are_masked(url, shown):
    assert redact_url(url) == shown and "s3cret" not in redact_url(url)


@pytest.mark.parametrize("value", ["sk-live-ABCDEF123456", "token:sk-live-ABCDEF123456", "s3cret"])
def test_a_value_that_is_not_a_url_is_never_shown(value):
    assert "ABCDEF" not in redact_url(value) and "s3cret" not in redact_url(value)
    with pytest.raises(QueueError) as caught:
        check_queue_url(value)
    assert "ABCDEF" not in str(caught.value) and "s3cret" not in str(caught.value)
    assert "not a URL" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://u:s3cret@h:abc/0",
        "redis://:s3cret@h:99999/0",
        "redis://:s3cret@[::1/0",
        "redis://h:6379/x?password=s3cret",
    ],
)
def test_a_malformed_url_with_a_password_is_one_line_without_the_password(url):
    with pytest.raises(QueueError) as caught:
        check_queue_url(url)
    message = str(caught.value)
    assert "s3cret" not in message and "\n" not in message and "expected redis://" in message
    assert "s3cret" not in redact_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "sk-live-ABCDEF123456",
        "http://ABCDEF@h",
        "redis://ABCDEF:x/0",
        "redis://h/ABCDEF",
        "redis://[ABCDEF",
        "unix://",
        "",
    ],
)
def test_the_reason_a_url_is_refused_quotes_no_part_of_it(url):
    problem = queue_url_problem(url)
    assert problem and "ABCDEF" not in problem


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://:p@h:1/2", "unix:///run/redis.sock", "redis://h"]
)
def test_good_queue_urls_are_accepted(url):
    assert check_queue_url(url) == url


@pytest.mark.parametrize(
    "url, message",
    [
        ("localhost:6379", "not a URL"),
        ("http://h", "'http://h': unknown scheme 'http'"),
        ("redis://", "no host"),
        ("redis://h:x/0", "invalid queue URL"),
        ("redis://h/db", "is not a number"),
        (None, "no queue URL"),
    ],
)
def test_bad_queue_urls_get_one_line_naming_what_is_expected(url, message):
    with pytest.raises(QueueError, match=message) as caught:
        check_queue_url(url)
    assert "expected redis://" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "url, error",
    [
        (
            "redis://:pw@cache.internal:7000/0",
            "Error 111 connecting to cache.internal:7000. Connection refused.",
        ),
        ("redis://cache.internal/0", "Error 111 connecting to cache.internal:6379. Connection refused."),
        (
            "redis://cache.internal:7000/0",
            "Error 111 connecting to cache.internal:7000. Connect call failed ('10.0.0.7', 7000).",
        ),
        (
            "redis://cache.internal:7000/0",
            "Error connecting to cache.internal:7000. Multiple exceptions: [Errno 111] Connect call failed "
            "('::1', 7000, 0, 0), [Errno 111] Connect call failed ('10.0.0.7', 7000).",
        ),
        (
            "unix:///run/cache.internal.sock",
            "Error 2 connecting to unix:///run/cache.internal.sock. No such file.",
        ),
        ("unix:///run/cache.internal.sock", "Error 2 connecting to /run/cache.internal.sock. No such file."),
    ],
)
def test_scrubbing_a_url_removes_every_form_an_error_quotes(url, error):
    scrubbed = scrub_url(f"at {redact_url(url)}: {error}", url, "<hidden>")
    assert "cache.internal" not in scrubbed and scrubbed.startswith("at <hidden>: Error")
    assert "7000" not in scrubbed and "10.0.0.7" not in scrubbed
