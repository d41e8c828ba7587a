"""The Helm chart: it lints and renders, its values are validated, it installs under the
restricted Pod Security Standard, and its RBAC is exactly enough to run the operator."""
import json
import subprocess

import pytest
import yaml

from tests.e2e.operator_harness import (ROOT, OperatorProcess, apply, condition, eventually, get, items,  # noqa: F401
                                        jobpool_crds, kubeconfig_for_token, pool_manifest, unique)

CHART = ROOT / "charts/jobpool"


def helm(cluster, *args, check=True):
    result = subprocess.run([cluster.bin("helm"), *args], env=cluster.env, capture_output=True, text=True,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr}")
    return result


def render(cluster, *sets):
    out = helm(cluster, "template", "jp", str(CHART), "--namespace", "ops",
               *[arg for s in sets for arg in ("--set", s)]).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def test_chart_lints_and_ships_the_generated_crd(kube_cluster):
    helm(kube_cluster, "lint", str(CHART), "--strict")
    assert (CHART / "crds/jobpool.dev_jobpools.yaml").exists()


def test_rendered_operator_is_restricted_and_rbac_is_least_privilege(kube_cluster):
    docs = render(kube_cluster)
    (deployment,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jp-operator"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert "--all-namespaces" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JOBPOOL_DEFAULT_QUEUE_URL"] == "redis://jp-redis.ops.svc:6379/0"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"

    (role,) = by_kind(docs, "ClusterRole")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    verbs = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert verbs[("", "secrets")] == {"get"}
    assert verbs[("", "pods")] == {"get", "list", "watch", "patch"}
    assert "delete" not in verbs[("apps", "deployments")]
    assert not any(r in ("clusterroles", "roles", "rolebindings", "namespaces") for _, r in verbs)


def test_watch_namespaces_get_roles_not_a_cluster_role_and_redis_is_optional(kube_cluster):
    docs = render(kube_cluster, "watchNamespaces={team-a,team-b}", "redis.enabled=false")
    assert by_kind(docs, "ClusterRole") == [] and by_kind(docs, "ClusterRoleBinding") == []
    namespaces = {r["metadata"]["namespace"] for r in by_kind(docs, "Role")}
    assert namespaces == {"team-a", "team-b", "ops"}  # ops: only the leader Lease
    (deployment,) = by_kind(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args
    assert "JOBPOOL_DEFAULT_QUEUE_URL" not in json.dumps(deployment)
    assert by_kind(docs, "Service") and all(s["metadata"]["name"] != "jp-redis" for s in by_kind(docs, "Service"))


@pytest.mark.parametrize("bad", ["replicas=-1", "metricsPort=0", "image.pullPolicy=Sometimes",
                                 "defaultQueueUrl=http://x", "watchNamespaces={Bad_NS}"])
def test_bad_values_are_refused(kube_cluster, bad):
    result = helm(kube_cluster, "template", "jp", str(CHART), "--set", bad, check=False)
    assert result.returncode != 0 and "values don't meet the specifications of the schema" in result.stderr


def test_chart_installs_restricted_and_its_rbac_runs_the_operator(jobpool_crds, kube_namespace, redis_server,
                                                                  tmp_path):
    cluster, ns = jobpool_crds, kube_namespace
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    release = unique("jp")
    helm(cluster, "install", release, str(CHART), "--namespace", ns, "--wait=false",
         "--set", f"watchNamespaces={{{ns}}}", "--set", "redis.enabled=false",
         "--set", f"defaultQueueUrl={redis_server.url}")
    try:
        # The restricted namespace admits the chart's pod (kwok then runs it).
        eventually(lambda: items(cluster, ns, "pods", "app.kubernetes.io/name=jobpool-operator"), timeout=60,
                   message="the operator pod admitted under the restricted PSS")
        sa = f"{release}-operator"
        for verb, resource, allowed in (("patch", "deployments", "yes"), ("get", "secrets", "yes"),
                                        ("list", "secrets", "no"), ("delete", "deployments", "no"),
                                        ("create", "roles", "no"), ("patch", "jobpools/status", "yes")):
            answer = cluster.kubectl("auth", "can-i", verb, resource, "-n", ns,
                                     f"--as=system:serviceaccount:{ns}:{sa}", check=False).stdout.strip()
            assert answer == allowed, (verb, resource, answer)

        # The operator, with nothing but the chart's service account, reconciles a pool to Ready.
        token = cluster.kubectl("create", "token", sa, "-n", ns, "--duration=1h").stdout.strip()
        scoped = kubeconfig_for_token(cluster, token, tmp_path / "sa.kubeconfig")
        operator = OperatorProcess(cluster, ns, redis_server.url, tmp_path / "operator.log", kubeconfig=scoped).start()
        try:
            eventually(lambda: "holding the leader lease" in operator.logs() or not operator.alive(), timeout=60,
                       message="the lease")
            assert operator.alive(), operator.logs()[-3000:]
            name = unique("restricted")
            apply(cluster, ns, pool_manifest(name, parallelism=2,
                                             queue={"urlSecretRef": {"name": "queue", "key": "url"}}))
            cluster.kubectl("-n", ns, "create", "secret", "generic", "queue", f"--from-literal=url={redis_server.url}")
            eventually(lambda: condition(get(cluster, ns, "jobpool", name), "Ready").get("status") == "True",
                       timeout=90, message="Ready=True under the chart's RBAC and the restricted PSS")
            assert len(items(cluster, ns, "pods", f"jobpool.dev/pool={name}")) == 2
            # The finalizer (scale the workers to zero, list their pods) runs under the same RBAC.
            cluster.kubectl("delete", "jobpool", name, "-n", ns, "--timeout=60s")
            assert "Forbidden" not in operator.logs() and "403" not in operator.logs(), operator.logs()[-3000:]
            assert "deleted the queue keys" in operator.logs(), operator.logs()[-3000:]
        finally:
            operator.stop()
    finally:
        helm(cluster, "uninstall", release, "--namespace", ns, check=False)
