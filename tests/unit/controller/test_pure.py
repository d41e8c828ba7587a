"""The operator's small pure pieces: flags, the leader-lease rule, URL redaction, batch digest."""

import pytest

from jobpool.controller.lease import LeaderLease, LeaseObserver, lease_is_free
from jobpool.controller.main import parse_args
from jobpool.controller.plan import batch_digest
from jobpool.controller.problems import invalid_queue_url, queue_message, shown_queue
from jobpool.queue import QueueUnavailable
from jobpool.queue.urls import redact_url
from tests.unit.factories import spec


def test_operator_flags(monkeypatch):
    monkeypatch.setenv("JOBPOOL_DEFAULT_QUEUE_URL", "redis://env:6379/0")
    args = parse_args(["--namespace", "a", "--namespace", "b", "--metrics-port", "9999"])
    assert args.namespace == ["a", "b"] and args.default_queue == "redis://env:6379/0"
    assert args.metrics_port == 9999 and not args.all_namespaces
    assert (
        parse_args(["--all-namespaces", "--default-queue", "redis://flag/0"]).default_queue
        == "redis://flag/0"
    )


def test_operator_needs_a_scope(capsys):
    with pytest.raises(SystemExit):
        parse_args([])
    assert "--namespace NS (repeatable) or --all-namespaces" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--namespace", "a", "--all-namespaces"])


def test_lease_is_free_when_unheld_ours_or_unchanged_for_a_duration():
    held = {"holderIdentity": "other", "renewTime": "2020-01-01T00:00:00.000000Z", "leaseDurationSeconds": 15}
    # A renewTime far behind our clock (skew, or a holder that just took over) is not expiry.
    assert not lease_is_free(held, "me", unchanged_for=0.0)
    assert not lease_is_free(held, "me", unchanged_for=15.0)
    assert lease_is_free(held, "me", unchanged_for=15.1)
    assert lease_is_free(held, "other", unchanged_for=0.0)
    assert lease_is_free({**held, "holderIdentity": None}, "me", unchanged_for=0.0)


def test_a_standby_times_the_lease_from_when_it_last_saw_it_change():
    observer = LeaseObserver()
    held = {"holderIdentity": "other", "renewTime": "2099-01-01T00:00:00.000000Z", "leaseDurationSeconds": 15}
    assert observer.unchanged_for(held, now=100.0) == 0.0  # first sight: a whole duration to wait
    assert observer.unchanged_for(held, now=110.0) == 10.0
    renewed = {**held, "renewTime": "2099-01-01T00:00:02.000000Z"}
    assert observer.unchanged_for(renewed, now=112.0) == 0.0
    assert observer.unchanged_for(renewed, now=127.5) == 15.5


def test_the_renew_deadline_is_shorter_than_the_lease():
    with pytest.raises(ValueError, match="renew_deadline < duration"):
        LeaderLease(None, "ns", "lease", "me", duration=15, renew_deadline=15)  # type: ignore[arg-type]


def pool_spec(queue):
    return spec(queue=queue)


SECRET_QUEUE = pool_spec({"urlSecretRef": {"name": "queue-auth", "key": "url"}})


def test_inline_queue_urls_lose_their_password_in_messages():
    inline = pool_spec({"url": "redis://:s3cret@redis:6379/0?password=s3cret"})
    assert shown_queue(inline, inline.queue.url) == "redis://:***@redis:6379/0?password=***"
    error = QueueUnavailable(f"cannot reach the queue at {redact_url(inline.queue.url)}: refused")
    assert "s3cret" not in queue_message(inline, inline.queue.url, error)


@pytest.mark.parametrize(
    "value",
    ["sk-live-ABCDEF123456", "redis://ABCDEF123456:x/0", "http://ABCDEF123456", "redis://h/ABCDEF123456"],
)
def test_a_queue_url_from_a_secret_is_never_quoted(value):
    problem = invalid_queue_url(SECRET_QUEUE, value)
    assert problem.reason == "InvalidQueueURL" and "ABCDEF" not in problem.message
    assert problem.message.startswith(
        'spec.queue.urlSecretRef: the URL in Secret "queue-auth" key "url" is not'
    )
    assert "ABCDEF" not in shown_queue(SECRET_QUEUE, value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@private-host.example/0",
        "rediss://u:s3cret@private-host.example:6380/0?password=s3cret",
    ],
)
def test_queue_errors_about_a_secret_url_quote_no_part_of_it(url):
    port = "6380" if ":6380" in url else "6379"
    error = QueueUnavailable(
        f"cannot reach the queue at {redact_url(url)}: Error 111 connecting to "
        f"private-host.example:{port}. Connection refused."
    )
    assert queue_message(SECRET_QUEUE, url, error) == (
        "cannot reach the queue at <hidden>: Error 111 connecting to <hidden>. Connection refused."
    )
    assert queue_message(SECRET_QUEUE, url, ValueError(f"bad {url}\nmore")) == "bad <hidden>"
    assert queue_message(SECRET_QUEUE, "", TimeoutError()) == "TimeoutError"
    assert "private-host" not in shown_queue(SECRET_QUEUE, url)


def test_queue_errors_about_an_inline_url_keep_it_without_the_password():
    inline = pool_spec({"url": "redis://:s3cret@redis:6379/0"})
    assert (
        queue_message(inline, inline.queue.url, OSError(f"lost {inline.queue.url}"))
        == "lost redis://:***@redis:6379/0"
    )


def test_batch_digest_follows_the_jobs_and_the_queue_they_go_to():
    a = spec(jobs={"range": {"count": 10}})
    assert batch_digest(a) == batch_digest(spec(jobs={"range": {"count": 10}}, parallelism=5))
    assert batch_digest(a) == batch_digest(spec(jobs={"range": {"count": 10}}, queue={"maxLength": 5}))
    assert batch_digest(a) != batch_digest(spec(jobs={"range": {"count": 11}}))
    moved = [
        spec(jobs={"range": {"count": 10}}, queue=queue)
        for queue in (
            {"url": "redis://a/0"},
            {"url": "redis://a/1"},
            {"urlSecretRef": {"name": "q", "key": "url"}},
        )
    ]
    assert len({batch_digest(s) for s in [a, *moved]}) == 4


def test_the_cache_keeps_what_the_loop_reads():
    from jobpool.controller.reconcile import ClusterCache

    cache = ClusterCache()
    pod = {
        "metadata": {
            "name": "p-1",
            "namespace": "ns",
            "labels": {"jobpool.dev/pool": "p"},
            "annotations": {"a": "1"},
            "managedFields": [{"manager": "kwok"}],
        },
        "spec": {"containers": [{"name": "worker"}]},
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no GPU"},
                {"type": "Ready", "status": "False"},
            ],
        },
    }
    cache.on_object_event("Pod", "ADDED", pod)
    assert cache.pods[("ns", "p")]["p-1"] == {
        "metadata": {
            "name": "p-1",
            "namespace": "ns",
            "labels": {"jobpool.dev/pool": "p"},
            "annotations": {"a": "1"},
        },
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no GPU"}
            ]
        },
    }
    deployment = {
        "metadata": {
            "name": "p-workers",
            "namespace": "ns",
            "labels": {"jobpool.dev/pool": "p"},
            "managedFields": [{}],
        },
        "spec": {"replicas": 2},
        "status": {"replicas": 2},
    }
    cache.on_object_event("Deployment", "ADDED", deployment)
    cached = cache.get("Deployment", "ns", "p-workers")
    assert "managedFields" not in cached["metadata"] and cached["spec"] == {"replicas": 2}
    cache.on_object_event("Deployment", "DELETED", deployment)
    assert cache.get("Deployment", "ns", "p-workers") is None


def test_kopf_logs_in_with_the_credentials_the_operator_loaded_once():
    from kubernetes import client as k8s_client

    from jobpool.controller.handlers import connection_info

    token = k8s_client.Configuration()
    token.host, token.ssl_ca_cert, token.api_key = (
        "https://api:6443",
        "/ca.crt",
        {"authorization": "Bearer t0ken"},
    )
    info = connection_info(token)
    assert (info.server, info.ca_path, info.scheme, info.token, info.insecure) == (
        "https://api:6443",
        "/ca.crt",
        "Bearer",
        "t0ken",
        False,
    )
    certificate = k8s_client.Configuration()
    certificate.host, certificate.cert_file, certificate.key_file = "https://api:6443", "/tls.crt", "/tls.key"
    info = connection_info(certificate)
    assert (info.certificate_path, info.private_key_path, info.token, info.scheme) == (
        "/tls.crt",
        "/tls.key",
        None,
        None,
    )
