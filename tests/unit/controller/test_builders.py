"""The pure builders: the worker Deployment, Service and PDB a JobPool asks for."""

import json

import pytest

from jobpool.controller import builders
from jobpool.controller.builders import PoolRef
from jobpool.controller.problems import validate_spec
from jobpool.worker.config import WorkerConfig, resolve_config
from tests.unit.factories import spec

POOL = PoolRef(name="thumbnails", namespace="media", uid="1234")


def env_of(deployment):
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_deployment_name_labels_owner_and_selector():
    d = builders.build_deployment(POOL, spec(), 2, "redis://default:6379/0")
    assert d["metadata"]["name"] == "thumbnails-workers" and d["metadata"]["namespace"] == "media"
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert labels["jobpool.dev/pool"] == "thumbnails"
    assert {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"} <= set(
        labels
    )
    assert d["spec"]["selector"] == {"matchLabels": {"jobpool.dev/pool": "thumbnails"}}
    assert d["spec"]["replicas"] == 2
    (owner,) = d["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "jobpool.dev/v1alpha1",
        "kind": "JobPool",
        "name": "thumbnails",
        "uid": "1234",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_worker_env_mirrors_the_worker_flags():
    s = spec(
        concurrency=4,
        timeoutSeconds=30,
        drainSeconds=20,
        retry={"maxAttempts": 5, "backoffSeconds": 0.5, "maxBackoffSeconds": 60},
        jobLimits={"maxTimeoutSeconds": 120, "maxAttempts": 7},
        worker={"image": "a", "handler": "m:f", "env": [{"name": "EXTRA", "value": "1"}]},
    )
    env = env_of(builders.build_deployment(POOL, s, 1, "redis://q:6379/0"))
    values = {k: v.get("value") for k, v in env.items()}
    assert values["JOBPOOL_QUEUE_URL"] == "redis://q:6379/0"
    assert values["JOBPOOL_NAMESPACE"] == "media" and values["JOBPOOL_POOL"] == "thumbnails"
    assert values["JOBPOOL_CONCURRENCY"] == "4" and values["JOBPOOL_HANDLER"] == "m:f"
    assert values["JOBPOOL_TIMEOUT"] == "30" and values["JOBPOOL_MAX_ATTEMPTS"] == "5"
    assert values["JOBPOOL_BACKOFF"] == "0.5" and values["JOBPOOL_MAX_BACKOFF"] == "60"
    assert values["JOBPOOL_MAX_JOB_TIMEOUT"] == "120" and values["JOBPOOL_MAX_JOB_ATTEMPTS"] == "7"
    assert values["JOBPOOL_DRAIN_SECONDS"] == "20" and values["JOBPOOL_METRICS_PORT"] == "9100"
    assert env["JOBPOOL_WORKER_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert values["EXTRA"] == "1"
    assert all(name.startswith("JOBPOOL_") or name == "EXTRA" for name in env)


def test_retention_settings_reach_the_worker_config_through_its_env():
    s = spec(
        worker={"image": "a", "handler": "m:f"},
        results={"ttlSeconds": 600, "maxCount": 2000},
        deadLetter={"maxLength": 50},
    )
    env = env_of(builders.build_deployment(POOL, s, 1, "redis://q:6379/0"))
    values = {k: v["value"] for k, v in env.items() if "value" in v}
    config = resolve_config({}, values, default_id=lambda: "pod-0")
    assert (config.result_ttl, config.max_results, config.max_dead_letters) == (600, 2000, 50)
    defaults = resolve_config(
        {},
        {
            k: v["value"]
            for k, v in env_of(builders.build_deployment(POOL, spec(), 1, "redis://q:6379/0")).items()
            if "value" in v
        },
        default_id=lambda: "p",
    )
    assert (defaults.result_ttl, defaults.max_results, defaults.max_dead_letters) == (
        WorkerConfig.result_ttl,
        WorkerConfig.max_results,
        WorkerConfig.max_dead_letters,
    )


def test_command_is_passed_as_a_json_array():
    s = spec(worker={"image": "a", "command": ["/app/resize", "--fast"]})
    env = env_of(builders.build_deployment(POOL, s, 1, None))
    assert json.loads(env["JOBPOOL_COMMAND"]["value"]) == ["/app/resize", "--fast"]
    assert "JOBPOOL_HANDLER" not in env


def test_queue_url_from_a_secret_is_a_secret_key_ref_never_inline():
    s = spec(queue={"urlSecretRef": {"name": "redis-auth", "key": "url"}})
    env = env_of(builders.build_deployment(POOL, s, 1, "redis://default:6379/0"))
    assert env["JOBPOOL_QUEUE_URL"] == {
        "name": "JOBPOOL_QUEUE_URL",
        "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "url"}},
    }


def test_user_env_cannot_override_the_operator_settings():
    s = spec(worker={"image": "a", "handler": "m:f", "env": [{"name": "JOBPOOL_POOL", "value": "other"}]})
    names = [
        e["name"]
        for e in builders.build_deployment(POOL, s, 1, "redis://q")["spec"]["template"]["spec"]["containers"][
            0
        ]["env"]
    ]
    assert names.count("JOBPOOL_POOL") == 1


def test_restricted_pod_probes_and_grace():
    d = builders.build_deployment(
        POOL,
        spec(drainSeconds=45, worker={"image": "a", "handler": "m:f", "resources": {"limits": {"cpu": "1"}}}),
        1,
        "redis://q",
    )
    pod = d["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["terminationGracePeriodSeconds"] == 45 + builders.DRAIN_MARGIN_SECONDS
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["ports"][0]["containerPort"] == 9100 and c["resources"] == {"limits": {"cpu": "1"}}


def test_same_spec_same_hash_and_no_write():
    a = builders.build_deployment(POOL, spec(), 2, "redis://q")
    b = builders.build_deployment(POOL, spec(), 2, "redis://q")
    assert a == b
    observed = json.loads(json.dumps(a))
    # The API server adds defaults; they are not drift.
    observed["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    observed["spec"]["strategy"] = {"type": "RollingUpdate"}
    assert not builders.needs_write(a, observed)


def test_a_spec_change_or_a_manual_edit_needs_a_write():
    desired = builders.build_deployment(POOL, spec(), 2, "redis://q")
    assert builders.needs_write(desired, None)
    assert builders.needs_write(builders.build_deployment(POOL, spec(concurrency=3), 2, "redis://q"), desired)
    assert builders.needs_write(builders.build_deployment(POOL, spec(), 3, "redis://q"), desired)
    edited = json.loads(json.dumps(desired))
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    assert builders.needs_write(desired, edited)
    relabelled = json.loads(json.dumps(desired))
    del relabelled["metadata"]["labels"]["jobpool.dev/pool"]
    assert builders.needs_write(desired, relabelled)


def test_service_and_pdb():
    svc = builders.build_service(POOL)
    assert svc["spec"]["selector"] == {"jobpool.dev/pool": "thumbnails"}
    assert svc["spec"]["ports"][0]["port"] == 9100
    assert builders.build_pdb(POOL, spec(parallelism=1)) is None
    pdb = builders.build_pdb(POOL, spec(parallelism=3))
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"jobpool.dev/pool": "thumbnails"}},
    }
    assert (
        builders.build_pdb(POOL, spec(parallelism=0, autoscaling={"enabled": True, "maxWorkers": 4}))
        is not None
    )


@pytest.mark.parametrize("handler", ["app.", "app:", ":f", "app tasks:f", "1app:f", "a:b:c"])
def test_an_unparsable_handler_names_the_field(handler):
    # The schema refuses these; this is the check for pools admitted by an older CRD without it.
    _, problem = validate_spec(
        {"worker": {"image": "a", "handler": handler}}, "redis://q", administered=False
    )
    assert problem.reason == "InvalidSpec" and problem.message.startswith("spec.worker.handler: ")


def raw(**kw):
    return {"worker": {"image": "a", "handler": "m:f"}, **kw}


def test_a_pool_without_any_queue_names_the_field():
    _, problem = validate_spec(raw(), None, administered=False)
    assert problem.reason == "NoQueue" and problem.message.startswith("spec.queue: ")
    assert validate_spec(raw(), "redis://q", administered=False)[1] is None
    assert (
        validate_spec(raw(worker={"image": "a", "handler": "pkg.mod:Class.method"}), "redis://q", False)[1]
        is None
    )


@pytest.mark.parametrize(
    "default_queue",
    [
        "redis://:s3cretpw@jp-redis.ops.svc:6379/0",
        "redis://app:s3cretpw@jp-redis:6379/0",
        "rediss://jp-redis:6380/0?password=s3cretpw",
    ],
)
def test_a_default_queue_with_a_password_is_never_inlined(default_queue):
    _, problem = validate_spec(raw(), default_queue, administered=False)
    assert problem.reason == "DefaultQueueHasCredentials" and "spec.queue.urlSecretRef" in problem.message
    assert "s3cretpw" not in problem.message
    with pytest.raises(ValueError):
        builders.build_deployment(POOL, spec(), 1, default_queue)
    # A pool naming its own queue does not use the default, so nothing of it reaches the Deployment.
    for own in ({"url": "redis://own:6379/0"}, {"urlSecretRef": {"name": "q", "key": "url"}}):
        assert validate_spec(raw(queue=own), default_queue, administered=False)[1] is None
        built = json.dumps(builders.build_deployment(POOL, spec(queue=own), 1, default_queue))
        assert "s3cretpw" not in built


def test_a_default_queue_without_a_password_may_stay_inline():
    env = env_of(builders.build_deployment(POOL, spec(), 1, "redis://jp-redis.ops.svc:6379/0"))
    assert env["JOBPOOL_QUEUE_URL"] == {
        "name": "JOBPOOL_QUEUE_URL",
        "value": "redis://jp-redis.ops.svc:6379/0",
    }


BUSY = {"karpenter.sh/do-not-disrupt": "true", "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
IDLE = {"karpenter.sh/do-not-disrupt": None, "cluster-autoscaler.kubernetes.io/safe-to-evict": None}
COST = "controller.kubernetes.io/pod-deletion-cost"


def test_deletion_costs_follow_busy_slots():
    current = {"p1": {}, "p2": {COST: "100", **BUSY}, "p3": {COST: "0"}}
    assert builders.pod_annotation_patches({"p1": 2, "p2": 1}, current) == {"p1": {COST: "200", **BUSY}}
    assert builders.pod_annotation_patches({}, current) == {"p2": {COST: "0", **IDLE}}
    # A busy count moving within its tier is no write; crossing a tier is.
    busy = {"p1": {COST: "200", **BUSY}, "p2": {COST: "100", **BUSY}}
    assert builders.pod_annotation_patches({"p1": 3, "p2": 1}, busy) == {}
    assert builders.pod_annotation_patches({"p1": 4, "p2": 0}, busy) == {
        "p1": {COST: "300"},
        "p2": {COST: "0", **IDLE},
    }


def test_busy_pods_ask_cluster_autoscalers_to_keep_their_node_and_idle_pods_let_it_go():
    assert builders.pod_annotations(1) == {COST: "100", **BUSY}
    assert builders.pod_annotations(0) == {COST: "0", **IDLE}
    # An idle pod that never held a job gets no write; one whose marks were lost gets them back.
    assert builders.pod_annotation_patches({"p1": 0}, {"p1": {"other": "x"}}) == {}
    assert builders.pod_annotation_patches({"p1": 1}, {"p1": {COST: "100"}}) == {"p1": BUSY}
    assert builders.pod_annotation_patches({"p1": 0}, {"p1": {"karpenter.sh/do-not-disrupt": "true"}}) == {
        "p1": {"karpenter.sh/do-not-disrupt": None}
    }


def test_canonicalised_quantities_are_not_drift():
    s = spec(
        worker={"image": "a", "handler": "m:f", "resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}}}
    )
    desired = builders.build_deployment(POOL, s, 1, "redis://q")
    observed = json.loads(json.dumps(desired))
    observed["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "500m", "memory": "1Gi"}
    }
    assert not builders.needs_write(desired, observed)
    observed["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "600m", "memory": "1Gi"}
    }
    assert builders.needs_write(desired, observed)
    observed["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "half", "memory": "1Gi"}
    }
    assert builders.needs_write(desired, observed)


def test_worker_pods_have_default_requests_and_a_read_only_root_with_a_writable_tmp():
    pod = builders.build_deployment(POOL, spec(), 1, "redis://q:6379/0")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    given = {"limits": {"memory": "1Gi"}}
    own = builders.build_deployment(
        POOL, spec(worker={"image": "a", "handler": "m:f", "resources": given}), 1, "redis://q:6379/0"
    )
    assert own["spec"]["template"]["spec"]["containers"][0]["resources"] == given, (
        "resources replace the default"
    )


def test_every_example_pool_requests_cpu_and_memory():
    import pathlib

    import yaml

    root = pathlib.Path(__file__).resolve().parents[3] / "examples"
    pools = [
        doc
        for path in sorted(root.glob("*/*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "JobPool"
    ]
    assert len(pools) >= 6
    for pool in pools:
        requests = pool["spec"]["worker"].get("resources", {}).get("requests", {})
        assert {"cpu", "memory"} <= set(requests), pool["metadata"]["name"]
