"""The chart's admission policies on the real API server: with the operator's own ServiceAccount
token (cluster-wide RBAC, the worst case), every write the operator makes passes and every other
Deployment, Service, PodDisruptionBudget and Secret write is refused; and no JobPool in the
release's namespace may reference the bundled Redis's superuser Secret."""

import copy

import pytest
from kubernetes import client as k8s_client, config as k8s_config

from jobpool.api import JobPoolSpec
from jobpool.controller import builders
from tests.e2e.operator_harness import apply, get, kubeconfig_for_token, pool_manifest, unique
from tests.e2e.test_chart import CHART, helm
from tests.helpers import wait_until


@pytest.fixture(scope="module")
def release(jobpool_crds, tmp_path_factory):
    """The chart installed cluster-wide (a ClusterRole) with the bundled Redis and its policies;
    (cluster, namespace, release, the operator's API clients)."""
    cluster = jobpool_crds
    ns, name = unique("admit"), unique("jp")
    cluster.kubectl("create", "namespace", ns)
    helm(
        cluster,
        "install",
        name,
        str(CHART),
        "--namespace",
        ns,
        "--wait=false",
        "--set",
        "aggregatedRoles.enabled=false",
        "--set",
        "redis.persistence.enabled=false",
    )
    try:
        token = cluster.kubectl(
            "create", "token", f"{name}-operator", "-n", ns, "--duration=1h"
        ).stdout.strip()
        config = kubeconfig_for_token(cluster, token, tmp_path_factory.mktemp("sa") / "kubeconfig")
        api = k8s_config.new_client_from_config(config)
        wait_until(
            lambda: policy_in_force(api, ns),
            timeout=60,
            interval=0.5,
            what="the API server enforcing the chart's admission policy",
        )
        yield cluster, ns, name, api
    finally:
        helm(cluster, "uninstall", name, "--namespace", ns, check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def policy_in_force(api, ns) -> bool:
    """A policy takes effect some time after it is created: a dry-run write it must refuse."""
    secret = {"metadata": {"name": "not-a-queue-secret"}, "stringData": {"x": "y"}}
    try:
        k8s_client.CoreV1Api(api).create_namespaced_secret(ns, secret, dry_run="All")
    except k8s_client.ApiException as error:
        return error.status == 403 and "jobpool operator" in error.body
    return False


def jobpool(cluster, ns, name):
    """A JobPool (no operator runs here) and what the builders make of it."""
    manifest = pool_manifest(name, parallelism=2)
    apply(cluster, ns, manifest)
    ref = builders.PoolRef(name, ns, get(cluster, ns, "jobpool", name)["metadata"]["uid"])
    return ref, JobPoolSpec.model_validate(manifest["spec"])


def refused(write, said="jobpool operator", case=""):
    with pytest.raises(k8s_client.ApiException) as error:
        write()
        pytest.fail(f"admitted: {case}")
    assert error.value.status == 403 and said in error.value.body, error.value.body
    return error.value.body


def test_the_operator_token_writes_its_worker_objects_and_nothing_else(release):
    cluster, ns, name, api = release
    apps, core, policy = k8s_client.AppsV1Api(api), k8s_client.CoreV1Api(api), k8s_client.PolicyV1Api(api)
    pool, spec = jobpool(cluster, ns, "allowed")
    other, other_spec = jobpool(cluster, ns, "denied")

    # What the builders emit passes, on create and on update.
    apps.create_namespaced_deployment(ns, builders.build_deployment(pool, spec, 2, None))
    apps.patch_namespaced_deployment(f"{pool.name}-workers", ns, {"spec": {"replicas": 0}})
    core.create_namespaced_service(ns, builders.build_service(pool))
    policy.create_namespaced_pod_disruption_budget(ns, builders.build_pdb(pool, spec))
    policy.delete_namespaced_pod_disruption_budget(f"{pool.name}-workers", ns)
    # The user's env may name the namespace's Secrets (a JobPool is a workload of its namespace).
    with_env = other_spec.model_copy(
        update={
            "worker": other_spec.worker.model_copy(
                update={
                    "env": [
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app-token", "key": "t"}}}
                    ]
                }
            )
        }
    )
    assert builders.build_deployment(other, with_env, 1, None)  # (created below as the last case)

    def deployment(mutate, namespace=ns):
        body = builders.build_deployment(other, other_spec, 1, None)
        mutate(body)
        body["metadata"]["namespace"] = namespace
        return lambda: apps.create_namespaced_deployment(namespace, body)

    def pod(body):
        return body["spec"]["template"]["spec"]

    def volumes(body):  # added to the builders' own (the worker mounts its /tmp)
        return pod(body).setdefault("volumes", [])

    def container(body):
        return pod(body)["containers"][0]

    superuser = f"{name}-redis"
    denied = {
        "another name": lambda b: b["metadata"].update(name="anything"),
        "no JobPool owner": lambda b: b["metadata"].pop("ownerReferences"),
        "another owner kind": lambda b: b["metadata"].update(
            ownerReferences=[
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "denied",
                    "uid": other.uid,
                    "controller": True,
                }
            ]
        ),
        "not labelled the operator's": lambda b: b["metadata"]["labels"].pop("app.kubernetes.io/managed-by"),
        "another pool's pods": lambda b: (
            b["spec"]["selector"]["matchLabels"].update({"jobpool.dev/pool": "allowed"}),
            b["spec"]["template"]["metadata"]["labels"].update({"jobpool.dev/pool": "allowed"}),
        ),
        "privileged": lambda b: container(b)["securityContext"].update(
            privileged=True, allowPrivilegeEscalation=True
        ),
        "an added capability": lambda b: container(b)["securityContext"].update(
            capabilities={"add": ["SYS_ADMIN"]}
        ),
        "a host port": lambda b: container(b)["ports"][0].update(hostPort=9100),
        "hostNetwork": lambda b: pod(b).update(hostNetwork=True),
        "hostPID": lambda b: pod(b).update(hostPID=True),
        "a hostPath volume": lambda b: volumes(b).append({"name": "root", "hostPath": {"path": "/"}}),
        "the superuser Secret in env": lambda b: container(b)["env"].append(
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": superuser, "key": "url"}}}
        ),
        "the superuser Secret as a volume": lambda b: volumes(b).append(
            {"name": "s", "secret": {"secretName": superuser}}
        ),
    }
    for case, mutate in denied.items():
        refused(deployment(mutate), case=case)
    # Cluster-wide RBAC reaches kube-system; the policy does not.
    refused(deployment(lambda b: None, namespace="kube-system"))
    # What spec.worker.podTemplate may add: a ServiceAccount of the namespace, its token mounted or projected.
    identity = builders.build_deployment(other, with_env, 1, None)
    pod(identity).update(serviceAccountName="app", automountServiceAccountToken=True)
    volumes(identity).append(
        {
            "name": "t",
            "projected": {"sources": [{"serviceAccountToken": {"path": "token", "audience": "sts"}}]},
        }
    )
    apps.create_namespaced_deployment(ns, identity)

    # Services: only its own, headless over its pool's pods; nobody else's is re-pointed.
    cluster.kubectl("-n", ns, "create", "service", "clusterip", "victim", "--tcp=80:80")
    refused(lambda: core.patch_namespaced_service("victim", ns, {"spec": {"selector": {"app": "mine"}}}))
    refused(
        lambda: core.patch_namespaced_service(
            f"{pool.name}-workers", ns, {"spec": {"selector": {"app": "x"}}}
        )
    )
    exposed = builders.build_service(other)
    exposed["spec"].update(type="NodePort", clusterIP=None)
    refused(lambda: core.create_namespaced_service(ns, exposed))

    # PodDisruptionBudgets: it deletes only its own.
    cluster.kubectl(
        "-n", ns, "create", "poddisruptionbudget", "victim", "--selector=app=db", "--min-available=1"
    )
    refused(lambda: policy.delete_namespaced_pod_disruption_budget("victim", ns))
    refused(
        lambda: policy.patch_namespaced_pod_disruption_budget("victim", ns, {"spec": {"minAvailable": 0}})
    )
    assert get(cluster, ns, "poddisruptionbudget", "victim") is not None


def test_the_operator_token_writes_only_opaque_queue_secrets_with_its_keys(release):
    cluster, ns, _name, api = release
    core = k8s_client.CoreV1Api(api)
    pool, _ = jobpool(cluster, ns, "secrets")
    owned = {
        "name": f"{pool.name}-queue",
        "labels": {"app.kubernetes.io/managed-by": "jobpool-operator"},
        "ownerReferences": [builders.owner_reference(pool)],
    }
    good = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": owned,
        "stringData": {"url": "redis://u:p@r:6379/0", "username": "u", "password": "p"},
    }
    token = copy.deepcopy(good)  # a token Secret would be minted for any account of the namespace
    token.update(type="kubernetes.io/service-account-token")
    token["metadata"]["annotations"] = {"kubernetes.io/service-account.name": "default"}
    extra = copy.deepcopy(good)
    extra["stringData"]["ca.crt"] = "x"
    renamed = copy.deepcopy(good)
    renamed["metadata"]["name"] = "elsewhere-queue"
    for body in (token, extra, renamed):
        refused(lambda: core.create_namespaced_secret(ns, body))
    core.create_namespaced_secret(ns, good)
    rotated = {"stringData": {"previous-password": "old"}}
    core.patch_namespaced_secret(owned["name"], ns, rotated)
    refused(lambda: core.patch_namespaced_secret(owned["name"], ns, {"stringData": {"token": "x"}}))


def test_no_jobpool_in_the_release_namespace_may_reference_the_superuser_secret(release):
    cluster, ns, name, _ = release
    superuser = f"{name}-redis"
    for manifest, said in (
        (
            pool_manifest("by-url", queue={"urlSecretRef": {"name": superuser, "key": "url"}}),
            "spec.queue.urlSecretRef: this Secret holds the queue's superuser URL",
        ),
        (
            pool_manifest(
                "by-env",
                worker={
                    "image": "a",
                    "handler": "m:f",
                    "env": [
                        {"name": "X", "valueFrom": {"secretKeyRef": {"name": superuser, "key": "password"}}}
                    ],
                },
            ),
            "spec.worker.env: this Secret holds the queue's superuser URL",
        ),
    ):
        result = apply(cluster, ns, manifest, check=False)
        assert result.returncode != 0 and said in result.stderr, result.stderr
    apply(cluster, ns, pool_manifest("own-secret", queue={"urlSecretRef": {"name": "queue", "key": "url"}}))
