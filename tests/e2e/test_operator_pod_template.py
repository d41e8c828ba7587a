"""spec.worker.podTemplate on the local control plane: the API server admits the passthrough fields and
refuses what the restricted profile forbids, naming the field; worker pods land on a tainted kwok node
they tolerate; the operator's own fields win and the status names the user's that lost."""

from __future__ import annotations

import json
import secrets

from tests.e2e.operator_harness import apply, condition, get, items, pool_manifest
from tests.helpers import wait_until


def pods_of(cluster, ns, pool):
    return [
        p
        for p in items(cluster, ns, "pods", f"jobpool.dev/pool={pool}")
        if not p["metadata"].get("deletionTimestamp")
    ]


def refused(cluster, ns, template: dict) -> str:
    """kubectl's error for a pool with this pod template (kubectl validates strictly: unknown fields too)."""
    result = apply(
        cluster,
        ns,
        pool_manifest(
            f"bad-{secrets.token_hex(2)}",
            worker={"image": "registry.example/app:1", "handler": "tasks:square", "podTemplate": template},
        ),
        check=False,
    )
    assert result.returncode != 0, f"admitted: {template}"
    return result.stderr


def test_the_api_server_refuses_what_the_restricted_profile_forbids(jobpool_crds, kube_namespace):
    cluster, ns = jobpool_crds, kube_namespace
    worker = lambda security: {"spec": {"containers": [{"name": "worker", "securityContext": security}]}}  # noqa: E731
    assert 'unknown field "spec.worker.podTemplate.spec.containers[0].securityContext.privileged"' in refused(
        cluster, ns, worker({"privileged": True})
    )
    assert 'unknown field "spec.worker.podTemplate.spec.volumes[0].hostPath"' in refused(
        cluster, ns, {"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}
    )
    assert 'unknown field "spec.worker.podTemplate.spec.hostNetwork"' in refused(
        cluster, ns, {"spec": {"hostNetwork": True}}
    )
    assert "spec.worker.podTemplate.spec.securityContext.runAsUser: Invalid value: 0" in refused(
        cluster, ns, {"spec": {"securityContext": {"runAsUser": 0}}}
    )
    assert (
        'spec.worker.podTemplate.spec.containers[0].securityContext.capabilities.add[0]: Unsupported value: "SYS_ADMIN"'
        in refused(cluster, ns, worker({"capabilities": {"add": ["SYS_ADMIN"]}}))
    )
    assert "only the worker container (name: worker) may be set" in refused(
        cluster, ns, {"spec": {"containers": [{"name": "sidecar", "image": "x"}]}}
    )
    explained = cluster.kubectl("explain", "jobpool.spec.worker.podTemplate.spec.tolerations").stdout
    assert "Taints the worker pods tolerate" in explained and "tolerationSeconds" in explained


def test_workers_land_on_the_tainted_node_they_tolerate_and_the_status_names_overridden_fields(
    gpu_node, operator, jobpool_crds, kube_namespace
):  # the node goes last: kwok deletes its pods
    cluster, ns = jobpool_crds, kube_namespace
    placement = {"nodeSelector": {"node.kubernetes.io/instance-family": "gpu"}}
    apply(
        cluster,
        ns,
        pool_manifest(
            "untolerated",
            parallelism=1,
            worker={
                "image": "registry.example/app:1",
                "handler": "tasks:square",
                "podTemplate": {"spec": placement},
            },
        ),
    )
    apply(
        cluster,
        ns,
        pool_manifest(
            "gpu",
            parallelism=2,
            worker={
                "image": "registry.example/app:1",
                "handler": "tasks:square",
                "resources": {"limits": {"nvidia.com/gpu": 1}},
                "podTemplate": {
                    "metadata": {"labels": {"team": "vision", "jobpool.dev/pool": "other"}},
                    "spec": {
                        **placement,
                        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                        "priorityClassName": "system-cluster-critical",
                    },
                },
            },
        ),
    )

    def both_running():
        pods = pods_of(cluster, ns, "gpu")
        return len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods) and pods

    pods = wait_until(both_running, timeout=60, what="the GPU pool's two pods Running")
    assert {p["spec"]["nodeName"] for p in pods} == {gpu_node}
    assert all(
        p["metadata"]["labels"]["team"] == "vision"
        and p["spec"]["priorityClassName"] == "system-cluster-critical"
        for p in pods
    )
    # Without the toleration the same nodeSelector finds no node: the pool says so.
    waiting = wait_until(
        lambda: (
            (c := condition(get(cluster, ns, "jobpool", "untolerated"), "Progressing")).get("reason")
            == "WaitingForCapacity"
            and c
        ),
        timeout=60,
        what="WaitingForCapacity",
    )
    assert "untolerated taint" in waiting["message"], waiting
    status = wait_until(
        lambda: get(cluster, ns, "jobpool", "gpu")["status"].get("overriddenFields"),
        timeout=30,
        what="status.overriddenFields",
    )
    assert status == ['spec.worker.podTemplate.metadata.labels[jobpool.dev/pool]: the operator keeps "gpu"']
    # Once the template no longer asks for it, the field goes from the status.
    cluster.kubectl(
        "patch",
        "jobpool",
        "gpu",
        "-n",
        ns,
        "--type=json",
        "-p",
        json.dumps([{"op": "remove", "path": "/spec/worker/podTemplate/metadata/labels/jobpool.dev~1pool"}]),
    )
    wait_until(
        lambda: "overriddenFields" not in get(cluster, ns, "jobpool", "gpu")["status"],
        timeout=30,
        what="status.overriddenFields gone",
    )


def test_a_template_the_api_server_refuses_makes_the_pool_degraded_naming_the_field(
    operator, jobpool_crds, kube_namespace
):
    cluster, ns = jobpool_crds, kube_namespace
    worker = {
        "image": "registry.example/app:1",
        "handler": "tasks:square",
        "podTemplate": {
            "spec": {
                "containers": [{"name": "worker", "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}]
            }
        },
    }
    apply(cluster, ns, pool_manifest("mounts", worker=worker))
    degraded = wait_until(
        lambda: (
            (c := condition(get(cluster, ns, "jobpool", "mounts"), "Degraded")).get("status") == "True" and c
        ),
        timeout=60,
        what="Degraded",
    )
    assert degraded["reason"] == "InvalidPodTemplate"
    assert "spec.template.spec.containers[0].volumeMounts[1].name" in degraded["message"], degraded
    worker["podTemplate"]["spec"]["volumes"] = [{"name": "cache", "emptyDir": {}}]
    apply(cluster, ns, pool_manifest("mounts", worker=worker))
    wait_until(
        lambda: condition(get(cluster, ns, "jobpool", "mounts"), "Ready").get("status") == "True",
        timeout=60,
        what="Ready once the volume exists",
    )
    volumes = get(cluster, ns, "deployment", "mounts-workers")["spec"]["template"]["spec"]["volumes"]
    assert volumes == [
        {"name": "tmp", "emptyDir": {}},
        {"name": "cache", "emptyDir": {}},
    ]  # /tmp is the operator's


# Every passthrough field at once, within the restricted profile: what the chart's admission policy and a
# namespace enforcing the restricted Pod Security Standard must admit (tests/e2e/test_chart.py applies it).
EVERY_FIELD = {
    "metadata": {"labels": {"team": "vision"}, "annotations": {"cost-tool/owner": "vision"}},
    "spec": {
        "serviceAccountName": "default",
        "automountServiceAccountToken": True,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "preference": {
                            "matchExpressions": [{"key": "type", "operator": "In", "values": ["kwok"]}]
                        },
                    }
                ]
            }
        },
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
        "imagePullSecrets": [{"name": "registry"}],
        "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
        "volumes": [
            {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
            {
                "name": "token",
                "projected": {
                    "sources": [{"serviceAccountToken": {"audience": "sts.example.com", "path": "token"}}]
                },
            },
        ],
        "initContainers": [
            {
                "name": "fetch",
                "image": "registry.example/app:1",
                "command": ["true"],
                "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
            },
            {
                "name": "proxy",
                "image": "registry.example/proxy:1",
                "restartPolicy": "Always",
                "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}},
            },
        ],
        "containers": [
            {
                "name": "worker",
                "securityContext": {"readOnlyRootFilesystem": True},
                "volumeMounts": [
                    {"name": "cache", "mountPath": "/cache", "readOnly": True},
                    {"name": "token", "mountPath": "/var/run/secrets/cloud"},
                ],
            }
        ],
    },
}


def test_every_passthrough_field_reaches_the_worker_pods(operator, jobpool_crds, kube_namespace):
    cluster, ns = jobpool_crds, kube_namespace
    apply(
        cluster,
        ns,
        pool_manifest(
            "every",
            worker={"image": "registry.example/app:1", "handler": "tasks:square", "podTemplate": EVERY_FIELD},
        ),
    )
    wait_until(
        lambda: condition(get(cluster, ns, "jobpool", "every"), "Ready").get("status") == "True",
        timeout=60,
        what="Ready",
    )
    (pod,) = pods_of(cluster, ns, "every")
    spec = pod["spec"]
    for field in (
        "serviceAccountName",
        "automountServiceAccountToken",
        "nodeSelector",
        "affinity",
        "topologySpreadConstraints",
        "imagePullSecrets",
    ):
        assert spec[field] == EVERY_FIELD["spec"][field], field
    assert EVERY_FIELD["spec"]["tolerations"][0] in spec["tolerations"]
    assert [c["name"] for c in spec["initContainers"]] == ["fetch", "proxy"]
    assert spec["initContainers"][1]["restartPolicy"] == "Always"
    assert pod["metadata"]["labels"]["team"] == "vision"
    assert pod["metadata"]["annotations"]["cost-tool/owner"] == "vision"
    assert "overriddenFields" not in get(cluster, ns, "jobpool", "every")["status"]
