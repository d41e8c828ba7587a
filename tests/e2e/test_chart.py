"""The Helm chart: it lints and renders, its values are validated, it installs under the
restricted Pod Security Standard, and its RBAC is exactly enough to run the operator."""

import base64
import json
import subprocess
import sys

import pytest
import yaml
from kubernetes import client as k8s_client, config as k8s_config

from jobpool.controller import builders
from jobpool.queue.redis import server
from tests.e2e.operator_harness import (
    OperatorProcess,
    apply,
    condition,
    get,
    items,
    kubeconfig_for_token,
    pool_manifest,
    unique,
)
from tests.e2e.test_operator_pod_template import EVERY_FIELD
from tests.helpers import ROOT, wait_until

CHART = ROOT / "charts/jobpool"


def helm(cluster, *args, check=True):
    result = subprocess.run(
        [cluster.bin("helm"), *args], env=cluster.env, capture_output=True, text=True, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr}")
    return result


def render(cluster, *sets):
    out = helm(
        cluster,
        "template",
        "jp",
        str(CHART),
        "--namespace",
        "ops",
        *[arg for s in sets for arg in ("--set", s)],
    ).stdout
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
    env = {e["name"]: e for e in container["env"]}
    # The bundled Redis is administered: its superuser URL reaches only the operator, from the Secret.
    assert env["JOBPOOL_ADMIN_QUEUE_URL"] == {
        "name": "JOBPOOL_ADMIN_QUEUE_URL",
        "valueFrom": {"secretKeyRef": {"name": "jp-redis", "key": "url"}},
    }
    assert "JOBPOOL_DEFAULT_QUEUE_URL" not in env
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"

    (role,) = [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == "jp-operator-ops"]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    verbs = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert verbs[("", "secrets")] == {"get", "create", "patch"}
    assert verbs[("", "pods")] == {"list", "watch", "patch"}
    assert "delete" not in verbs[("apps", "deployments")]
    assert not any(r in ("clusterroles", "roles", "rolebindings", "namespaces") for _, r in verbs)


def test_watch_namespaces_get_roles_not_a_cluster_role_and_redis_is_optional(kube_cluster):
    docs = render(kube_cluster, "watchNamespaces={team-a,team-b}", "redis.enabled=false")
    assert {r["metadata"]["name"] for r in by_kind(docs, "ClusterRole")} == {"jobpool-view", "jobpool-edit"}
    assert by_kind(docs, "ClusterRoleBinding") == []
    namespaces = {r["metadata"]["namespace"] for r in by_kind(docs, "Role")}
    assert namespaces == {"team-a", "team-b", "ops"}  # ops: only the leader Lease
    (deployment,) = by_kind(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args
    assert "JOBPOOL_DEFAULT_QUEUE_URL" not in json.dumps(deployment)
    assert "JOBPOOL_ADMIN_QUEUE_URL" not in json.dumps(deployment)
    assert by_kind(docs, "Service") and all(
        s["metadata"]["name"] != "jp-redis" for s in by_kind(docs, "Service")
    )


def test_jobpool_roles_aggregate_to_view_and_edit(kube_cluster):
    roles = {r["metadata"]["name"]: r for r in by_kind(render(kube_cluster), "ClusterRole")}
    view, edit = roles["jobpool-view"], roles["jobpool-edit"]
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert {v for rule in view["rules"] for v in rule["verbs"]} == {"get", "list", "watch"}
    assert by_kind(render(kube_cluster, "aggregatedRoles.enabled=false"), "ClusterRole") != [] and not [
        r
        for r in by_kind(render(kube_cluster, "aggregatedRoles.enabled=false"), "ClusterRole")
        if r["metadata"]["name"].startswith("jobpool-")
    ]


def decoded(secret):
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def redis_parts(docs):
    (deployment,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jp-redis"]
    pod = deployment["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_bundled_redis_password_is_made_by_a_hook_and_no_manifest_spells_it_out(kube_cluster):
    docs = render(kube_cluster)
    assert by_kind(docs, "Secret") == [], "the password is made in the cluster, not in a render"
    hooks = [d for d in docs if "helm.sh/hook" in d["metadata"].get("annotations", {})]
    (job,) = [d for d in hooks if d["kind"] == "Job" and d["metadata"]["name"] == "jp-redis-secret"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:5] == [
        "operator",
        "ensure-redis-secret",
        "--name=jp-redis",
        "--namespace=ops",
        "--address=jp-redis.ops.svc:6379/0",
    ]
    (role,) = [d for d in hooks if d["kind"] == "Role" and d["metadata"]["name"] == "jp-redis-secret"]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["jp-redis"],
            "verbs": ["get", "patch"],
        },
    ]
    _, redis = redis_parts(docs)
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)" and "--protected-mode" not in args
    assert args[args.index("--appendonly") + 1] == "yes"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in redis["env"]}
    assert env == {
        "REDIS_PASSWORD": {"name": "jp-redis", "key": "password"},
        "REDISCLI_AUTH": {"name": "jp-redis", "key": "password"},
    }


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("watchNamespaces={a,b}", "uninstall.pools=delete"),
        ("redis.auth.existingSecret=mine",),
        ("monitoring.prometheusRule.enabled=true", "monitoring.dashboard.enabled=true"),
        ("externalMetrics.enabled=true", "replicas=2"),
    ],
)
def test_two_renders_of_the_same_values_are_identical(kube_cluster, sets):
    """GitOps: Argo CD and Flux render on every sync; nothing may differ between two renders."""

    def rendered():
        return helm(
            kube_cluster,
            "template",
            "jp",
            str(CHART),
            "--namespace",
            "ops",
            *[arg for s in sets for arg in ("--set", s)],
        ).stdout

    assert rendered() == rendered()


def test_an_existing_secret_holds_the_password_and_no_hook_runs(kube_cluster):
    docs = render(
        kube_cluster, "redis.auth.existingSecret=redis-auth", "redis.auth.existingSecretPasswordKey=pw"
    )
    assert not [d for d in docs if d["metadata"]["name"] == "jp-redis-secret"]
    _, redis = redis_parts(docs)
    assert {e["name"]: e["valueFrom"]["secretKeyRef"] for e in redis["env"]}["REDIS_PASSWORD"] == {
        "name": "redis-auth",
        "key": "pw",
    }
    (deployment,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jp-operator"]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["JOBPOOL_REDIS_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "redis-auth", "key": "pw"}}
    assert (
        env["JOBPOOL_ADMIN_QUEUE_URL"]["value"]
        == "redis://:$(JOBPOOL_REDIS_PASSWORD)@jp-redis.ops.svc:6379/0"
    )


def run_redis_secret_hook(cluster, release: str, ns: str, tmp_path) -> str:
    """kwok completes the hook's Job without running it: run its command as the chart renders it,
    with its ServiceAccount's token (the hook RBAC applied as the hook would create it)."""
    hooks = [d for d in yaml.safe_load_all(helm(cluster, "get", "hooks", release, "-n", ns).stdout) if d]
    for doc in hooks:
        if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(doc))
    (job,) = [d for d in hooks if d["kind"] == "Job" and d["metadata"]["name"] == f"{release}-redis-secret"]
    token = cluster.kubectl(
        "create", "token", job["spec"]["template"]["spec"]["serviceAccountName"], "-n", ns
    ).stdout.strip()
    scoped = kubeconfig_for_token(cluster, token, tmp_path / "hook.kubeconfig")
    done = subprocess.run(
        [sys.executable, "-m", "jobpool.cli", *job["spec"]["template"]["spec"]["containers"][0]["args"]],
        cwd=ROOT,
        env={**cluster.env, "KUBECONFIG": scoped},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_bundled_redis_is_durable_by_default_and_an_empty_dir_is_opt_in(kube_cluster):
    docs = render(kube_cluster, "redis.persistence.size=5Gi", "redis.persistence.storageClass=fast")
    (claim,) = by_kind(docs, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "jp-redis" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert (
        claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
        and claim["spec"]["storageClassName"] == "fast"
    )
    pod, redis = redis_parts(docs)
    assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "jp-redis"}}]
    assert {"name": "data", "mountPath": "/data"} in redis["volumeMounts"]
    assert "storageClassName" not in by_kind(render(kube_cluster), "PersistentVolumeClaim")[0]["spec"]

    docs = render(kube_cluster, "redis.persistence.enabled=false")
    assert by_kind(docs, "PersistentVolumeClaim") == []
    assert redis_parts(docs)[0]["volumes"] == [{"name": "data", "emptyDir": {}}]


def test_bundled_redis_has_a_maxmemory_below_its_memory_limit_and_never_evicts(kube_cluster):
    def maxmemory(*sets):
        args = redis_parts(render(kube_cluster, *sets))[1]["args"]
        assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
        return args[args.index("--maxmemory") + 1]

    assert maxmemory() == str(int(512 * 2**20 * 0.8))  # 80% of the default 512Mi limit
    # the volume holds at least twice the maxmemory (see the volume rule's test)
    assert maxmemory(
        "redis.resources.limits.memory=2Gi", "redis.maxmemoryPercent=75", "redis.persistence.size=3Gi"
    ) == str(int(2 * 2**30 * 0.75))
    assert maxmemory("redis.resources.limits.memory=1G", "redis.persistence.size=2Gi") == str(int(1e9 * 0.8))
    assert maxmemory("redis.maxmemory=300mb") == "300mb"
    for limit, said in (
        ("null", "redis.resources.limits.memory is required"),
        ("lots", "'lots' does not match pattern"),
    ):  # Kubernetes' Quantity in the schema
        result = helm(
            kube_cluster,
            "template",
            "jp",
            str(CHART),
            "--set",
            f"redis.resources.limits.memory={limit}",
            check=False,
        )
        assert result.returncode != 0 and said in result.stderr, result.stderr


def test_bundled_redis_bounds_what_one_client_can_do_to_the_others(kube_cluster):
    """The settings jobpool's tests run the preallocation attack against (redis/server.py)."""
    args = redis_parts(render(kube_cluster))[1]["args"]
    assert {name: args[args.index(f"--{name}") + 1] for name in server.CLIENT_BOUNDS} == server.CLIENT_BOUNDS
    args = redis_parts(render(kube_cluster, "redis.clientBounds.timeout=60"))[1]["args"]
    assert args[args.index("--timeout") + 1] == "60"
    result = helm(
        kube_cluster, "template", "jp", str(CHART), "--set", "redis.clientBounds.timeout=lots", check=False
    )
    assert result.returncode != 0 and "clientBounds/timeout" in result.stderr, result.stderr


def test_bundled_redis_admits_only_worker_pods_and_the_operator(kube_cluster):
    (policy,) = by_kind(render(kube_cluster), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "jobpool-redis",
        "app.kubernetes.io/instance": "jp",
    }
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    workers, operator = rule["from"]
    assert workers["podSelector"] == {"matchExpressions": [{"key": "jobpool.dev/pool", "operator": "Exists"}]}
    assert workers["namespaceSelector"] == {}
    assert operator == {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/name": "jobpool-operator", "app.kubernetes.io/instance": "jp"}
        }
    }
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]

    (scoped,) = by_kind(render(kube_cluster, "watchNamespaces={team-a,team-b}"), "NetworkPolicy")
    assert scoped["spec"]["ingress"][0]["from"][0]["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}
        ]
    }
    assert by_kind(render(kube_cluster, "redis.networkPolicy.enabled=false"), "NetworkPolicy") == []


def test_bundled_redis_image_is_pinned_by_digest_unless_a_local_image_clears_it(kube_cluster):
    values = yaml.safe_load((CHART / "values.yaml").read_text())["redis"]["image"]
    assert values["digest"].startswith("sha256:") and len(values["digest"]) == 71
    assert redis_parts(render(kube_cluster))[1]["image"] == f"redis:{values['tag']}@{values['digest']}"
    local = render(
        kube_cluster, "redis.image.repository=jobpool-redis", "redis.image.tag=dev", "redis.image.digest="
    )
    assert redis_parts(local)[1]["image"] == "jobpool-redis:dev"


def test_without_a_password_the_bundled_url_may_stay_inline(kube_cluster):
    docs = render(kube_cluster, "redis.auth.enabled=false")
    assert by_kind(docs, "Secret") == []
    (deployment,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jp-operator"]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["JOBPOOL_DEFAULT_QUEUE_URL"]["value"] == "redis://jp-redis.ops.svc:6379/0"
    assert "--requirepass" not in redis_parts(docs)[1]["args"]


@pytest.mark.parametrize(
    "bad",
    [
        "replicas=-1",
        "metricsPort=0",
        "image.pullPolicy=Sometimes",
        "defaultQueueUrl=http://x",
        "watchNamespaces={Bad_NS}",
        "redis.persistence.size=lots",
        "redis.auth.enabled=maybe",
        "redis.maxmemory=lots",
        "redis.maxmemoryPercent=100",
        "redis.image.digest=latest",
        "redis.image.digest=sha256:abc",
        # Kubernetes' own schemas, closed: a typo is refused
        "resources.requets.cpu=1",
        "affinity.nodeAfinity.x=1",
        "tolerations[0].efect=NoSchedule",
        "topologySpreadConstraints[0].maxSkew=one",
        "redis.resources.limit.memory=1Gi",
        "imagePullSecrets[0].nam=reg",
        "image.digest=latest",
        "redis.image.digst=x",
    ],
)
def test_bad_values_are_refused(kube_cluster, bad):
    result = helm(kube_cluster, "template", "jp", str(CHART), "--set", bad, check=False)
    assert result.returncode != 0 and "values don't meet the specifications of the schema" in result.stderr


def test_chart_installs_restricted_and_its_rbac_runs_the_operator(
    jobpool_crds, kube_namespace, redis_server, tmp_path
):
    cluster, ns = jobpool_crds, kube_namespace
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    release = unique("jp")
    helm(
        cluster,
        "install",
        release,
        str(CHART),
        "--namespace",
        ns,
        "--wait=false",
        "--set",
        f"watchNamespaces={{{ns}}}",
        "--set",
        "redis.enabled=false",
        "--set",
        f"defaultQueueUrl={redis_server.url}",
    )
    try:
        # The restricted namespace admits the chart's pod (kwok then runs it).
        wait_until(
            lambda: items(cluster, ns, "pods", "app.kubernetes.io/name=jobpool-operator"),
            timeout=60,
            what="the operator pod admitted under the restricted PSS",
        )
        # The built-in view and edit roles now cover JobPools (the aggregation controller merged them).
        cluster.kubectl("-n", ns, "create", "rolebinding", "viewer", "--clusterrole=view", "--user=viewer")
        cluster.kubectl("-n", ns, "create", "rolebinding", "editor", "--clusterrole=edit", "--user=editor")
        for user, verb, resource, allowed in (
            ("viewer", "list", "jobpools", "yes"),
            ("viewer", "create", "jobpools", "no"),
            ("editor", "create", "jobpools", "yes"),
            ("editor", "patch", "jobpools/scale", "yes"),
        ):
            wait_until(
                lambda: (
                    cluster.kubectl(
                        "auth", "can-i", verb, resource, "-n", ns, f"--as={user}", check=False
                    ).stdout.strip()
                    == allowed
                ),
                timeout=30,
                what=f"{user} {verb} {resource}: {allowed}",
            )
        sa = f"{release}-operator"
        for verb, resource, allowed in (
            ("patch", "deployments", "yes"),
            ("get", "secrets", "yes"),
            ("list", "secrets", "no"),
            ("delete", "deployments", "no"),
            ("create", "secrets", "yes"),
            ("delete", "secrets", "no"),
            ("create", "roles", "no"),
            ("patch", "jobpools/status", "yes"),
        ):
            answer = cluster.kubectl(
                "auth",
                "can-i",
                verb,
                resource,
                "-n",
                ns,
                f"--as=system:serviceaccount:{ns}:{sa}",
                check=False,
            ).stdout.strip()
            assert answer == allowed, (verb, resource, answer)

        # The operator, with nothing but the chart's service account, reconciles a pool to Ready.
        token = cluster.kubectl("create", "token", sa, "-n", ns, "--duration=1h").stdout.strip()
        scoped = kubeconfig_for_token(cluster, token, tmp_path / "sa.kubeconfig")
        operator = OperatorProcess(
            cluster, ns, redis_server.url, tmp_path / "operator.log", kubeconfig=scoped
        ).start()
        try:
            wait_until(lambda: operator.holds_lease() or not operator.alive(), timeout=60, what="the lease")
            assert operator.alive(), operator.logs()[-3000:]
            name = unique("restricted")
            apply(
                cluster,
                ns,
                pool_manifest(name, parallelism=2, queue={"urlSecretRef": {"name": "queue", "key": "url"}}),
            )
            cluster.kubectl(
                "-n", ns, "create", "secret", "generic", "queue", f"--from-literal=url={redis_server.url}"
            )
            wait_until(
                lambda: condition(get(cluster, ns, "jobpool", name), "Ready").get("status") == "True",
                timeout=90,
                what="Ready=True under the chart's RBAC and the restricted PSS",
            )
            assert len(items(cluster, ns, "pods", f"jobpool.dev/pool={name}")) == 2
            # The finalizer (scale the workers to zero, list their pods) runs under the same RBAC.
            cluster.kubectl("delete", "jobpool", name, "-n", ns, "--timeout=60s")
            assert "Forbidden" not in operator.logs() and "403" not in operator.logs(), operator.logs()[
                -3000:
            ]
            assert "deleted the queue keys" in operator.logs(), operator.logs()[-3000:]
        finally:
            operator.stop()
    finally:
        helm(cluster, "uninstall", release, "--namespace", ns, check=False)


def test_bundled_redis_installs_restricted_and_its_password_stays_in_its_secret(
    jobpool_crds, kube_namespace, redis_server, tmp_path
):
    cluster, ns = jobpool_crds, kube_namespace
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    release = unique("jp")
    install = ("--namespace", ns, "--wait=false", "--set", f"watchNamespaces={{{ns}}}")
    helm(cluster, "install", release, str(CHART), *install)
    try:
        assert "created Secret" in run_redis_secret_hook(cluster, release, ns, tmp_path)
        # Pods exist only once admitted: the Redis pod (its PVC may stay unbound here) and the operator pass.
        for name in ("jobpool-redis", "jobpool-operator"):
            wait_until(
                lambda: items(cluster, ns, "pods", f"app.kubernetes.io/name={name}"),
                timeout=60,
                what=f"the {name} pod admitted under the restricted PSS",
            )
        secret = get(cluster, ns, "secret", f"{release}-redis")
        password, url = decoded(secret)["password"], decoded(secret)["url"]
        assert get(cluster, ns, "networkpolicy", f"{release}-redis") is not None
        assert get(cluster, ns, "persistentvolumeclaim", f"{release}-redis") is not None
        for kind in ("deployments", "pods", "configmaps", "networkpolicies"):
            assert password not in json.dumps(items(cluster, ns, kind)), kind
        assert len(password) == 48 and url == f"redis://:{password}@{release}-redis.{ns}.svc:6379/0"
        # An upgrade keeps the password: the hook finds it and changes nothing.
        helm(cluster, "upgrade", release, str(CHART), *install)
        assert "is up to date" in run_redis_secret_hook(cluster, release, ns, tmp_path)
        assert decoded(get(cluster, ns, "secret", f"{release}-redis"))["password"] == password

        # `helm install` + `kubectl apply -f examples/01-minimal`: Ready with no manual Secret. The
        # operator runs with nothing but the chart's ServiceAccount token (and under its admission
        # policy); kwok runs no Redis, so the session's redis-server stands in for the bundled one.
        sa = f"{release}-operator"
        token = cluster.kubectl("create", "token", sa, "-n", ns, "--duration=1h").stdout.strip()
        scoped = kubeconfig_for_token(cluster, token, tmp_path / "sa.kubeconfig")
        operator = OperatorProcess(
            cluster,
            ns,
            None,
            tmp_path / "operator.log",
            kubeconfig=scoped,
            extra_args=("--admin-queue", redis_server.url),
        ).start()
        try:
            wait_until(lambda: operator.holds_lease() or not operator.alive(), timeout=60, what="the lease")
            assert operator.alive(), operator.logs()[-3000:]
            cluster.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples/01-minimal/jobpool.yaml"))
            name = "squares"
            wait_until(
                lambda: condition(get(cluster, ns, "jobpool", name), "Ready").get("status") == "True",
                timeout=90,
                what="the minimal example Ready with no manual Secret",
            )
            deployment = get(cluster, ns, "deployment", f"{name}-workers")
            (env,) = [
                e
                for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
                if e["name"] == "JOBPOOL_QUEUE_URL"
            ]
            assert env == {
                "name": "JOBPOOL_QUEUE_URL",
                "valueFrom": {"secretKeyRef": {"name": f"{name}-queue", "key": "url"}},
            }
            assert get(cluster, ns, "secret", f"{name}-queue-producer") is not None
            for text in (
                json.dumps(get(cluster, ns, "jobpool", name)),
                json.dumps(items(cluster, ns, "events")),
                json.dumps(items(cluster, ns, "deployments")),
                operator.logs(),
            ):
                assert password not in text
            assert "Forbidden" not in operator.logs() and "403" not in operator.logs(), operator.logs()[
                -3000:
            ]
            check_admission_policy(cluster, ns, name, scoped)
            check_pod_template_admitted(cluster, ns, operator)
            cluster.kubectl("delete", "jobpool", name, "-n", ns, "--timeout=60s")
            assert "Forbidden" not in operator.logs(), operator.logs()[-3000:]
        finally:
            operator.stop()
    finally:
        helm(cluster, "uninstall", release, "--namespace", ns, check=False)


def check_pod_template_admitted(cluster, ns, operator):
    """Every spec.worker.podTemplate field at once: the operator's Deployment passes the admission policy,
    its pods the restricted Pod Security Standard the namespace enforces."""
    cluster.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps(
            pool_manifest(
                "every",
                worker={
                    "image": "registry.example/app:1",
                    "handler": "tasks:square",
                    "podTemplate": EVERY_FIELD,
                },
            )
        ),
    )
    wait_until(
        lambda: condition(get(cluster, ns, "jobpool", "every"), "Ready").get("status") == "True",
        timeout=90,
        what="the pool with every pod template field Ready",
    )
    assert "Forbidden" not in operator.logs(), operator.logs()[-3000:]
    cluster.kubectl("delete", "jobpool", "every", "-n", ns, "--timeout=60s")


def check_admission_policy(cluster, ns, pool, kubeconfig):
    """As the operator's ServiceAccount: the annotations it manages on a worker pod may change,
    nothing else of it, and no Secret but the pools' queue Secrets may be written."""
    pod = wait_until(
        lambda: items(cluster, ns, "pods", f"jobpool.dev/pool={pool}"), timeout=60, what="a worker pod"
    )[0]["metadata"]["name"]

    # The API as the operator calls it (a PATCH or a POST, no GET first as kubectl would do).
    core = k8s_client.CoreV1Api(k8s_config.new_client_from_config(kubeconfig))
    busy = {builders.ANNOTATION_DELETION_COST: "100", **builders.BUSY_POD_ANNOTATIONS}
    core.patch_namespaced_pod(pod, ns, {"metadata": {"annotations": busy}})  # a pod turns busy
    core.patch_namespaced_pod(
        pod,
        ns,
        {
            "metadata": {
                "annotations": {  # and idle again
                    builders.ANNOTATION_DELETION_COST: "0",
                    **dict.fromkeys(builders.BUSY_POD_ANNOTATIONS),
                }
            }
        },
    )
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "stolen"}, "stringData": {"a": "b"}}
    for denied in (
        lambda: core.patch_namespaced_pod(pod, ns, {"metadata": {"annotations": {"other": "x"}}}),
        lambda: core.patch_namespaced_pod(pod, ns, {"metadata": {"labels": {"other": "x"}}}),
        lambda: core.patch_namespaced_pod(pod, ns, {"spec": {"activeDeadlineSeconds": 1}}),
        lambda: core.create_namespaced_secret(ns, secret),
        lambda: core.patch_namespaced_secret(
            f"{pool}-queue", ns, {"metadata": {"labels": {"app.kubernetes.io/managed-by": "someone"}}}
        ),
    ):
        with pytest.raises(k8s_client.ApiException) as refused:
            denied()
        assert refused.value.status == 403 and "jobpool operator may" in refused.value.body, (
            refused.value.body
        )


def test_the_default_queue_may_be_a_sentinel_or_cluster_url_and_its_password_stays_in_a_secret(kube_cluster):
    def operator_env(*sets):
        (deployment,) = [
            d
            for d in by_kind(render(kube_cluster, "redis.enabled=false", *sets), "Deployment")
            if d["metadata"]["name"] == "jp-operator"
        ]
        return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}

    admin = operator_env("adminQueue.secretName=ha-redis")["JOBPOOL_ADMIN_QUEUE_URL"]
    assert admin == {
        "name": "JOBPOOL_ADMIN_QUEUE_URL",
        "valueFrom": {"secretKeyRef": {"name": "ha-redis", "key": "url"}},
    }
    for url in ("redis+cluster://node-0:6379\\,node-1:6379", "redis+sentinel://s1:26379\\,s2:26379/mymaster"):
        env = operator_env(f"defaultQueueUrl={url}")
        assert env["JOBPOOL_DEFAULT_QUEUE_URL"]["value"] == url.replace("\\,", ",")


def test_operator_ha_knobs_render_into_the_pod_and_a_pdb(kube_cluster):
    docs = render(
        kube_cluster,
        "replicas=2",
        "priorityClassName=platform",
        "imagePullSecrets[0].name=registry",
        "podLabels.team=platform",
        "podAnnotations.example\\.com/owner=ops",
        "image.digest=sha256:" + "a" * 64,
        "topologySpreadConstraints[0].maxSkew=1",
        "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
        "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
        "resources.requests.cpu=1",
        "redis.nodeSelector.disk=ssd",
        "redis.priorityClassName=queues",
        "redis.tolerations[0].key=dedicated",
        "redis.tolerations[0].operator=Exists",
    )
    (deployment,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jp-operator"]
    template = deployment["spec"]["template"]
    pod = template["spec"]
    assert template["metadata"]["labels"]["team"] == "platform"
    assert template["metadata"]["annotations"] == {"example.com/owner": "ops"}
    assert pod["priorityClassName"] == "platform" and pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["containers"][0]["image"] == "ghcr.io/jobpool/operator@sha256:" + "a" * 64
    assert pod["containers"][0]["resources"]["requests"]["cpu"] == 1
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": deployment["spec"]["selector"]}
    redis_pod, _ = redis_parts(docs)
    assert redis_pod["nodeSelector"] == {"disk": "ssd"} and redis_pod["priorityClassName"] == "queues"
    assert redis_pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert redis_pod["imagePullSecrets"] == [{"name": "registry"}]
    hooks = [d for d in docs if d["kind"] == "Job"]
    assert hooks and all(
        j["spec"]["template"]["spec"]["containers"][0]["image"].endswith("a" * 64) for j in hooks
    )
    # one replica: no PDB (it would block every drain) and no anti-affinity
    single = render(kube_cluster)
    assert by_kind(single, "PodDisruptionBudget") == []
    (one,) = [d for d in by_kind(single, "Deployment") if d["metadata"]["name"] == "jp-operator"]
    assert "affinity" not in one["spec"]["template"]["spec"]


@pytest.mark.cluster
def test_the_kubernetes_schemas_of_the_values_are_those_of_the_kubernetes_we_build():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chart_schema.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_bundled_redis_has_probes_an_opt_in_pdb_and_a_volume_of_twice_its_maxmemory(kube_cluster):
    docs = render(kube_cluster)
    _, redis = redis_parts(docs)
    assert redis["livenessProbe"]["exec"]["command"][-1] == "ping"
    assert redis["startupProbe"]["failureThreshold"] * redis["startupProbe"]["periodSeconds"] == 300
    assert [d for d in by_kind(docs, "PodDisruptionBudget") if d["metadata"]["name"] == "jp-redis"] == []
    (pdb,) = [
        d
        for d in by_kind(
            render(kube_cluster, "redis.podDisruptionBudget.enabled=true"), "PodDisruptionBudget"
        )
        if d["metadata"]["name"] == "jp-redis"
    ]
    assert pdb["spec"]["maxUnavailable"] == 0
    # 512Mi of limit -> maxmemory 429496729 bytes: 1Gi holds twice that, 800Mi does not
    refused = helm(
        kube_cluster, "template", "jp", str(CHART), "--set", "redis.persistence.size=800Mi", check=False
    )
    assert refused.returncode != 0
    assert (
        "redis.persistence.size 800Mi is less than twice Redis's maxmemory (429496729 bytes)"
        in refused.stderr
    )
    assert render(kube_cluster, "redis.persistence.size=2Gi", "redis.maxmemory=1gb")
    assert (
        helm(
            kube_cluster, "template", "jp", str(CHART), "--set", "redis.maxmemory=600mb", check=False
        ).returncode
        != 0
    )


def test_every_object_carries_the_recommended_labels(kube_cluster):
    docs = render(kube_cluster, "monitoring.prometheusRule.enabled=true")
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "jobpool", (doc["kind"], doc["metadata"]["name"])
        assert labels.get("app.kubernetes.io/instance") == "jp", (doc["kind"], doc["metadata"]["name"])
        if doc["metadata"]["name"].startswith("jp-redis") and "helm.sh/hook" not in doc["metadata"].get(
            "annotations", {}
        ):
            assert labels["app.kubernetes.io/name"] == "jobpool-redis", doc["kind"]


def test_the_notes_warn_when_pools_would_have_no_queue(kube_cluster):
    def notes(*sets):
        return helm(
            kube_cluster,
            "install",
            "jp",
            str(CHART),
            "--dry-run=client",
            "--namespace",
            "ops",
            *[arg for s in sets for arg in ("--set", s)],
        ).stdout.split("NOTES:", 1)[1]

    assert "WARNING: no default queue" in notes("redis.enabled=false")
    bundled = notes()
    assert "WARNING" not in bundled and "jobpool submit <pool> -n <namespace>" in bundled
    assert "kubectl apply --server-side -f <chart>/crds/" in bundled
