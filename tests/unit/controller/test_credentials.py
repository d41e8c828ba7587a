"""The pure part of per-pool queue credentials: what each role's Secret should hold, when a
rotation may drop the previous password, and what the worker Deployment reads."""

import base64
import itertools
import json

import pytest

from jobpool.api import JobPoolSpec
from jobpool.controller import builders, credentials
from jobpool.controller.credentials import Credentials, CredentialsRead, decide, old_pods_gone, plan_writes
from jobpool.controller.problems import validate_spec
from jobpool.queue import acl

POOL = builders.PoolRef(name="squares", namespace="team-a", uid="uid-1")
ADMIN = "redis://:admin-pw@jp-redis.ops.svc:6379/0"


def passwords():
    counter = itertools.count(1)
    return lambda: f"pw{next(counter)}"


def pod(digest, terminating=False):
    meta = {"annotations": {builders.ANNOTATION_CREDENTIALS: digest}}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


def test_first_credentials_then_unchanged():
    first = decide(None, "", old_pods_gone=True, make_password=passwords())
    assert first == Credentials("pw1", None, "")
    assert decide(first, "", old_pods_gone=True) == first


def test_a_rotation_keeps_the_old_password_until_the_old_pods_are_gone():
    make = passwords()
    current = decide(None, "", True, make)
    rolling = decide(current, "2026-12-01", old_pods_gone=True, make_password=make)
    assert rolling == Credentials("pw2", "pw1", "2026-12-01") and rolling.passwords == ("pw2", "pw1")
    assert decide(rolling, "2026-12-01", old_pods_gone=False, make_password=make) == rolling
    # another rotation asked for meanwhile waits for this one to finish
    assert decide(rolling, "again", old_pods_gone=False, make_password=make) == rolling
    done = decide(rolling, "again", old_pods_gone=True, make_password=make)
    assert done == Credentials("pw2", None, "2026-12-01")
    assert decide(done, "again", True, make) == Credentials("pw3", "pw2", "again")


def test_old_pods_are_gone_when_every_pod_runs_the_current_password_and_none_terminates():
    new = credentials.digest(Credentials("pw2", "pw1", "r"))
    old = credentials.digest(Credentials("pw1", None, ""))
    assert old_pods_gone({}, new)
    assert old_pods_gone({"a": pod(new), "b": pod(new)}, new)
    assert not old_pods_gone({"a": pod(new), "b": pod(old)}, new)
    assert not old_pods_gone({"a": pod(new, terminating=True)}, new)
    assert not old_pods_gone({"a": {"metadata": {}}}, new)


def test_the_secret_is_owned_by_the_pool_and_holds_the_users_url_on_the_same_server():
    secret = credentials.build_secret(POOL, acl.WORKER, Credentials("pw2", "pw1", "r1"), ADMIN)
    assert secret["metadata"]["name"] == "squares-queue" and secret["metadata"]["namespace"] == "team-a"
    assert secret["metadata"]["ownerReferences"] == [builders.owner_reference(POOL)]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "url": "redis://jobpool.team-a.squares.worker:pw2@jp-redis.ops.svc:6379/0",
        "username": "jobpool.team-a.squares.worker",
        "password": "pw2",
        "previous-password": "pw1",
    }
    assert "admin-pw" not in json.dumps(secret)
    assert credentials.read_secret(secret) == Credentials("pw2", "pw1", "r1")
    producer = credentials.build_secret(POOL, acl.PRODUCER, Credentials("pw9", None, ""), ADMIN)
    assert (
        producer["metadata"]["name"] == "squares-queue-producer"
        and "previous-password" not in producer["data"]
    )


def test_a_managed_pool_reads_its_url_from_its_own_secret_and_rolls_with_its_password():
    spec, problem = validate_spec({"worker": {"image": "a", "handler": "m:f"}}, ADMIN, administered=True)
    assert problem is None
    deployment = builders.build_deployment(POOL, spec, 1, ADMIN, "digest-1")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    (env,) = [e for e in container["env"] if e["name"] == "JOBPOOL_QUEUE_URL"]
    assert env == {
        "name": "JOBPOOL_QUEUE_URL",
        "valueFrom": {"secretKeyRef": {"name": "squares-queue", "key": "url"}},
    }
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        builders.ANNOTATION_CREDENTIALS: "digest-1"
    }
    assert "admin-pw" not in json.dumps(deployment)
    rolled = builders.build_deployment(POOL, spec, 1, ADMIN, "digest-2")
    assert builders.needs_write(rolled, deployment)
    # a pool with its own queue keeps it, and no credentials annotation
    own = JobPoolSpec.model_validate(
        {"worker": {"image": "a", "handler": "m:f"}, "queue": {"url": "redis://own:6379/0"}}
    )
    built = builders.build_deployment(POOL, own, 1, ADMIN, "digest-1")
    assert "annotations" not in built["spec"]["template"]["metadata"] and "admin-pw" not in json.dumps(built)


def test_the_operator_takes_one_default_queue_plain_or_administered(capsys, monkeypatch):
    from jobpool.controller.main import parse_args

    monkeypatch.delenv("JOBPOOL_DEFAULT_QUEUE_URL", raising=False)
    monkeypatch.setenv("JOBPOOL_ADMIN_QUEUE_URL", ADMIN)
    assert parse_args(["-n", "team-a"]).admin_queue == ADMIN
    with pytest.raises(SystemExit) as exited:
        parse_args(["-n", "team-a", "--default-queue", "redis://q:6379/0"])
    assert exited.value.code == 2
    assert "not both" in capsys.readouterr().err


FRESH = {acl.WORKER: "new-w", acl.PRODUCER: "new-p"}


def kinds_of(writes):
    return [(w.role, "secret" if w.secret else "user", w.credentials.password) for w in writes]


def test_a_first_read_plans_each_user_before_the_secret_that_names_it():
    read = CredentialsRead({}, "", secrets={acl.WORKER: None, acl.PRODUCER: None}, fresh=FRESH)
    writes, worker = plan_writes(read, {})
    assert kinds_of(writes) == [
        (acl.WORKER, "user", "new-w"),
        (acl.WORKER, "secret", "new-w"),
        (acl.PRODUCER, "user", "new-p"),
        (acl.PRODUCER, "secret", "new-p"),
    ]
    assert [w.change for w in writes if w.secret] == ["created", "created"]
    assert worker == Credentials("new-w", None, "")


def test_a_rotation_adds_the_new_password_first_and_drops_the_old_one_only_after_its_secret():
    held = {acl.WORKER: Credentials("w1", None, ""), acl.PRODUCER: Credentials("p1", None, "")}
    rotating, worker = plan_writes(CredentialsRead(held, "r", secrets=held, fresh=FRESH), {})
    assert kinds_of(rotating)[:2] == [(acl.WORKER, "user", "new-w"), (acl.WORKER, "secret", "new-w")]
    assert worker == Credentials("new-w", "w1", "r") and rotating[1].change == "rotating"
    rolled = {role: w.credentials for w in rotating for role in [w.role]}
    pods = {"a": pod(credentials.digest(rolled[acl.WORKER]))}
    finishing, worker = plan_writes(CredentialsRead(rolled, "r", secrets=rolled, fresh=FRESH), pods)
    # the previous password leaves Redis once no Secret names it: the Secret first, then the user
    assert kinds_of(finishing)[:2] == [(acl.WORKER, "secret", "new-w"), (acl.WORKER, "user", "new-w")]
    assert worker == Credentials("new-w", None, "r") and finishing[0].change == "rotated"


def test_unread_secrets_plan_the_held_users_again_only_when_a_check_is_due():
    held = {acl.WORKER: Credentials("w1", None, ""), acl.PRODUCER: Credentials("p1", None, "")}
    assert plan_writes(CredentialsRead(held, ""), {}) == ((), held[acl.WORKER])
    writes, worker = plan_writes(CredentialsRead(held, "", recheck=True), {})
    assert kinds_of(writes) == [(acl.WORKER, "user", "w1"), (acl.PRODUCER, "user", "p1")]
    assert worker == held[acl.WORKER]
    assert plan_writes(CredentialsRead({}, ""), {}) == ((), None)


def test_planning_the_writes_is_pure():
    read = CredentialsRead({}, "", secrets={acl.WORKER: None, acl.PRODUCER: None}, fresh=FRESH)
    assert plan_writes(read, {}) == plan_writes(read, {})
