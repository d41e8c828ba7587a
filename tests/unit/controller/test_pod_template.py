"""spec.worker.podTemplate merged into the worker pods the operator builds: the user's fields pass through,
the operator's own win and are named in status.overriddenFields."""

import copy

import pydantic
import pytest

from jobpool.api import JobPoolSpec
from jobpool.controller import builders, plan as plan_module
from jobpool.controller.builders import PoolRef
from jobpool.controller.problems import validate_spec
from tests.unit.controller.test_plan import gathered

POOL = PoolRef(name="renders", namespace="team-a", uid="u-1")
WORKER = {"image": "registry.example/app:1.0", "handler": "app.tasks:render"}


def spec(template, **worker):
    return JobPoolSpec.model_validate({"worker": {**WORKER, **worker, "podTemplate": template}})


def pod(template, **worker):
    return builders.build_deployment(POOL, spec(template, **worker), 1, "redis://q:6379/0")["spec"][
        "template"
    ]


def test_placement_identity_and_volumes_pass_through():
    template = {
        "metadata": {
            "labels": {"kueue.x-k8s.io/queue-name": "team-a"},
            "annotations": {"mesh/inject": "false"},
        },
        "spec": {
            "serviceAccountName": "renderer",
            "automountServiceAccountToken": True,
            "nodeSelector": {"gpu": "a100"},
            "priorityClassName": "batch-high",
            "runtimeClassName": "nvidia",
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                        ]
                    }
                }
            },
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
            ],
            "imagePullSecrets": [{"name": "registry"}],
            "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
            "containers": [{"name": "worker", "volumeMounts": [{"name": "models", "mountPath": "/models"}]}],
        },
    }
    built = pod(template)
    labels, podspec = built["metadata"]["labels"], built["spec"]
    assert labels["kueue.x-k8s.io/queue-name"] == "team-a" and labels["jobpool.dev/pool"] == "renders"
    assert built["metadata"]["annotations"] == {"mesh/inject": "false"}
    for field in (
        "serviceAccountName",
        "automountServiceAccountToken",
        "nodeSelector",
        "priorityClassName",
        "runtimeClassName",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "imagePullSecrets",
    ):
        assert podspec[field] == template["spec"][field], field
    tmp = {"name": "tmp", "emptyDir": {}}  # the operator's writable /tmp (read-only root filesystem)
    assert podspec["volumes"] == [tmp, *template["spec"]["volumes"]]
    (worker,) = podspec["containers"]
    assert worker["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "models", "mountPath": "/models"},
    ]
    assert worker["image"] == WORKER["image"] and worker["command"] == ["jobpool", "worker"]
    assert podspec["terminationGracePeriodSeconds"] == 70


def test_the_templates_worker_resources_win_over_the_crds_default_but_not_over_the_users():
    gpu = {"limits": {"nvidia.com/gpu": "1"}}
    template = {"spec": {"containers": [{"name": "worker", "resources": gpu}]}}
    assert pod(template)["spec"]["containers"][0]["resources"] == gpu
    own = {"requests": {"cpu": "2"}}
    s = spec(template).model_copy(deep=True)
    s.worker.resources = own
    built = builders.build_deployment(POOL, s, 1, "redis://q:6379/0")
    assert built["spec"]["template"]["spec"]["containers"][0]["resources"] == own


def test_no_template_leaves_the_operators_pod_as_it_was():
    plain = builders.build_deployment(
        POOL, JobPoolSpec.model_validate({"worker": WORKER}), 1, "redis://q:6379/0"
    )
    assert pod({}) == plain["spec"]["template"]
    assert plain["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_the_operators_own_fields_win_and_are_named():
    template = {
        "metadata": {
            "labels": {"jobpool.dev/pool": "other", "team": "a"},
            "annotations": {
                "controller.kubernetes.io/pod-deletion-cost": "5",
                "karpenter.sh/do-not-disrupt": "true",
                "jobpool.dev/credentials": "x",
            },
        },
        "spec": {
            "containers": [
                {
                    "name": "worker",
                    "image": "evil:1",
                    "command": ["sh"],
                    "args": ["-c", "x"],
                    "env": [{"name": "JOBPOOL_POOL", "value": "other"}, {"name": "MINE", "value": "1"}],
                    "livenessProbe": {"exec": {"command": ["true"]}},
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["NET_RAW"]},
                    },
                }
            ]
        },
    }
    s = spec(template, env=[{"name": "JOBPOOL_CONCURRENCY", "value": "99"}])
    built = builders.build_deployment(POOL, s, 1, "redis://q:6379/0")["spec"]["template"]
    (worker,) = built["spec"]["containers"]
    assert (
        built["metadata"]["labels"]["jobpool.dev/pool"] == "renders"
        and built["metadata"]["labels"]["team"] == "a"
    )
    assert "annotations" not in built["metadata"]
    assert (
        worker["image"] == WORKER["image"]
        and worker["command"] == ["jobpool", "worker"]
        and "args" not in worker
    )
    assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["JOBPOOL_POOL"] == "renders" and env["MINE"] == "1" and env["JOBPOOL_CONCURRENCY"] == "1"
    assert worker["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "readOnlyRootFilesystem": True,
    }
    overridden = builders.overridden_fields(POOL, s)
    where = "spec.worker.podTemplate"
    assert overridden == (
        "spec.worker.env[JOBPOOL_CONCURRENCY]: the operator sets it from the JobPool's spec",
        f'{where}.metadata.labels[jobpool.dev/pool]: the operator keeps "renders"',
        f"{where}.metadata.annotations[controller.kubernetes.io/pod-deletion-cost]: the operator sets it itself",
        f"{where}.metadata.annotations[karpenter.sh/do-not-disrupt]: the operator sets it itself",
        f"{where}.metadata.annotations[jobpool.dev/credentials]: the operator sets it itself",
        f'{where}.spec.containers[worker].image: the operator keeps "registry.example/app:1.0"',
        f'{where}.spec.containers[worker].command: the operator keeps ["jobpool","worker"]',
        f"{where}.spec.containers[worker].args: the operator keeps it unset",
        f"{where}.spec.containers[worker].livenessProbe: the operator keeps "
        '{"httpGet":{"path":"/healthz","port":"metrics"},"periodSeconds":10,"timeoutSeconds":2,"failureThreshold":3}',
        f"{where}.spec.containers[worker].env[JOBPOOL_POOL]: the operator keeps its own",
        f'{where}.spec.containers[worker].securityContext.capabilities.drop: the operator keeps ["ALL"]',
    )


def test_sidecars_and_init_containers_get_the_restricted_context_under_their_own():
    template = {
        "spec": {
            "initContainers": [
                {"name": "fetch-model", "image": "fetcher:1", "command": ["fetch"]},
                {
                    "name": "proxy",
                    "image": "proxy:1",
                    "restartPolicy": "Always",
                    "securityContext": {"runAsUser": 1337, "capabilities": {"add": ["NET_BIND_SERVICE"]}},
                },
            ]
        }
    }
    init, sidecar = pod(template)["spec"]["initContainers"]
    assert init["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert sidecar["restartPolicy"] == "Always" and sidecar["securityContext"]["runAsUser"] == 1337
    assert sidecar["securityContext"]["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}


def test_pod_security_context_is_merged_over_the_operators():
    built = pod({"spec": {"securityContext": {"fsGroup": 2000, "runAsUser": 1000}}})
    assert built["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "fsGroup": 2000,
        "runAsUser": 1000,
    }


def test_only_the_worker_container_may_be_named_in_containers():
    with pytest.raises(pydantic.ValidationError, match="only the worker container"):
        spec({"spec": {"containers": [{"name": "sidecar", "image": "x"}]}})


def test_a_changed_template_changes_the_stamped_hash():
    a = builders.build_deployment(POOL, spec({"spec": {"nodeSelector": {"gpu": "a"}}}), 1, "redis://q:6379/0")
    b = builders.build_deployment(POOL, spec({"spec": {"nodeSelector": {"gpu": "b"}}}), 1, "redis://q:6379/0")
    assert (
        a["metadata"]["annotations"]["jobpool.dev/spec-hash"]
        != b["metadata"]["annotations"]["jobpool.dev/spec-hash"]
    )


def test_the_status_lists_the_overridden_fields_and_drops_them_once_gone():
    s, _ = validate_spec(
        {"worker": {**WORKER, "podTemplate": {"metadata": {"labels": {"jobpool.dev/pool": "x"}}}}},
        "redis://q:6379/0",
        administered=False,
    )
    fields = builders.overridden_fields(POOL, s)
    first = plan_module.plan(gathered(s, overridden=fields))
    assert first.status["overriddenFields"] == list(fields) and len(fields) == 1
    cleared = plan_module.plan(gathered(s, stored_status=dict(first.memory.status)))
    assert cleared.status is not None and cleared.status["overriddenFields"] is None
    untouched = plan_module.plan(gathered(s))
    assert "overriddenFields" not in (untouched.status or {})


def test_a_volume_size_the_api_server_canonicalised_is_no_drift():
    desired = builders.build_deployment(
        POOL,
        spec({"spec": {"volumes": [{"name": "c", "emptyDir": {"sizeLimit": "1024Mi"}}]}}),
        1,
        "redis://q:6379/0",
    )
    observed = copy.deepcopy(desired)
    observed["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] = "1Gi"
    assert not builders.needs_write(desired, observed)
