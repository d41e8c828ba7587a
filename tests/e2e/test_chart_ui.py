"""The chart's web page (`ui.enabled`): rendered read-only by default and restricted, reachable
only through the API server (Kubernetes RBAC on its Service's proxy), reading through a Redis user
that the operator keeps for it, with its password only in its Secret."""

import base64
import json
import urllib.parse

import pytest
import redis as redis_sync
import requests

from jobpool.queue import viewer
from tests.e2e.operator_harness import OperatorProcess, condition, get, items, kubeconfig_for_token
from tests.e2e.test_chart import CHART, by_kind, helm, render
from tests.helpers import ROOT, SyncQueue, wait_until
from tests.integration.ui.conftest import start_ui  # noqa: F401  (the fixture)


def ui_objects(docs):
    deployment = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jp-ui"]
    operator = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jp-operator"]
    return deployment, operator[0]


def env_of(deployment):
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_page_is_off_by_default_and_read_only_when_on(kube_cluster):
    deployment, _ = ui_objects(render(kube_cluster))
    assert deployment == []
    docs = render(kube_cluster, "ui.enabled=true")
    (deployment,), operator = ui_objects(docs)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert (
        container["args"][0] == "ui"
        and "--read-only" in container["args"]
        and "--all-namespaces" in container["args"]
    )
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = env_of(deployment)
    assert (
        env["JOBPOOL_QUEUE_URL"]["value"]
        == "redis://jobpool.ui-viewer:$(JOBPOOL_UI_VIEWER_PASSWORD)@jp-redis.ops.svc:6379/0"
    )
    assert env["JOBPOOL_UI_VIEWER_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "jp-ui-viewer",
        "key": "password",
    }
    (secret,) = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == "jp-ui-viewer"]
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) == 32 and password not in json.dumps([d for d in docs if d["kind"] != "Secret"])
    operator_env = env_of(operator)
    assert operator_env["JOBPOOL_UI_VIEWER_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "jp-ui-viewer"
    assert operator_env["JOBPOOL_UI_ACTIONS"]["value"] == "0"
    (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "jp-ui"]
    assert service["spec"]["type"] == "ClusterIP"
    (role,) = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "jp-ui-viewer"]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["services/proxy"],
            "resourceNames": ["jp-ui", "jp-ui:http"],
            "verbs": ["get", "create"],
        }
    ]
    (policy,) = by_kind(docs, "NetworkPolicy")
    assert {"app.kubernetes.io/name": "jobpool-ui", "app.kubernetes.io/instance": "jp"} in [
        p.get("podSelector", {}).get("matchLabels") for p in policy["spec"]["ingress"][0]["from"]
    ]

    docs = render(kube_cluster, "ui.enabled=true", "ui.actions=true", "watchNamespaces={team-a,team-b}")
    (deployment,), operator = ui_objects(docs)
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--read-only" not in args and "--namespace=team-a" in args and "--namespace=team-b" in args
    assert env_of(operator)["JOBPOOL_UI_ACTIONS"]["value"] == "1"


@pytest.mark.parametrize(
    "sets, message",
    [
        (("ui.enabled=true", "redis.auth.enabled=false"), "needs a queue the operator administers"),
        (
            ("ui.enabled=true", "redis.enabled=false", "defaultQueueUrl=redis://q:6379/0"),
            "needs a queue the operator administers",
        ),
        (("ui.enabled=true", "redis.enabled=false", "adminQueue.secretName=admin"), "set ui.queueAddress"),
        (("ui.enabled=true", "ui.queueAddress=redis://u:pw@q:6379/0"), "schema"),
    ],
)
def test_the_page_needs_an_administered_queue_and_an_address_without_credentials(kube_cluster, sets, message):
    result = helm(
        kube_cluster, "template", "jp", str(CHART), *[a for s in sets for a in ("--set", s)], check=False
    )
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_the_page_installs_restricted_and_reads_through_the_user_the_operator_keeps(
    jobpool_crds, kube_namespace, redis_server, start_ui, tmp_path
):
    cluster, ns = jobpool_crds, kube_namespace
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    release = "jpui"
    install = (
        "--namespace",
        ns,
        "--wait=false",
        "--set",
        f"watchNamespaces={{{ns}}}",
        "--set",
        "ui.enabled=true",
        "--set",
        "ui.viewers[0].kind=User",
        "--set",
        "ui.viewers[0].name=oncall",
    )
    helm(cluster, "install", release, str(CHART), *install)
    try:
        wait_until(
            lambda: items(cluster, ns, "pods", "app.kubernetes.io/name=jobpool-ui"),
            timeout=60,
            what="the page's pod admitted under the restricted PSS",
        )
        secret = get(cluster, ns, "secret", f"{release}-ui-viewer")
        password = base64.b64decode(secret["data"]["password"]).decode()
        for kind in ("deployments", "pods", "services", "configmaps"):
            assert password not in json.dumps(items(cluster, ns, kind)), kind
        # who may open it: the bound user through the service proxy, nobody else
        for user, allowed in (("oncall", "yes"), ("stranger", "no")):
            answer = cluster.kubectl(
                "auth",
                "can-i",
                "get",
                f"services/{release}-ui:http",
                "--subresource=proxy",
                "-n",
                ns,
                f"--as={user}",
                check=False,
            ).stdout.strip()
            assert answer == allowed, (user, answer)
        assert (
            cluster.kubectl(
                "auth", "can-i", "get", "secrets", "-n", ns, "--as=oncall", check=False
            ).stdout.strip()
            == "no"
        )

        # the operator, with the chart's token, keeps the page's Redis user on the queue it administers
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
            env={"JOBPOOL_UI_VIEWER_PASSWORD": password, "JOBPOOL_UI_ACTIONS": "0"},
        ).start()
        try:
            wait_until(lambda: operator.holds_lease() or not operator.alive(), timeout=60, what="the lease")
            cluster.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples/01-minimal/jobpool.yaml"))
            wait_until(
                lambda: condition(get(cluster, ns, "jobpool", "squares"), "Ready").get("status") == "True",
                timeout=90,
                what="the minimal example Ready",
            )
            producer_url = base64.b64decode(
                get(cluster, ns, "secret", "squares-queue-producer")["data"]["url"]
            ).decode()
            producer = SyncQueue(producer_url, ns, "squares")
            producer.submit_many([3, 4], ["three", "four"])
            producer.close()

            # the page as the chart runs it: the Deployment's URL, the kubelet's expansion done by hand,
            # the session's redis-server standing in for the bundled one (kwok runs no container)
            deployment = get(cluster, ns, "deployment", f"{release}-ui")
            url = env_of(deployment)["JOBPOOL_QUEUE_URL"]["value"].replace(
                "$(JOBPOOL_UI_VIEWER_PASSWORD)", password
            )
            host = urllib.parse.urlsplit(redis_server.url).netloc
            url = url.replace(f"{release}-redis.{ns}.svc:6379", host)
            args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            ui = start_ui(
                url, [], *[a for a in args[1:] if not a.startswith(("--listen", "--namespace"))], namespace=ns
            )
            pools = requests.get(ui.base, timeout=10).text
            assert f'data-pool="{ns}/squares"' in pools
            page = requests.get(f"{ui.base}pools/{ns}/squares", timeout=10).text
            assert "three" in page and "four" in page and "may not read" not in page
            assert (
                "actions are turned off" in requests.get(f"{ui.base}pools/{ns}/squares/dead", timeout=10).text
            )
            for text in (operator.logs(), ui.log(), pools, page):
                assert password not in text
            rules = redis_sync.Redis.from_url(redis_server.url, decode_responses=True).acl_getuser(
                viewer.USER
            )
            assert rules["keys"] == [f"~{{jobpool:{ns}/*"] or f"~{{jobpool:{ns}/*" in str(rules), rules
        finally:
            operator.stop()
    finally:
        helm(cluster, "uninstall", release, "--namespace", ns, check=False)
