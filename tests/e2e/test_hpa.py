"""An HPA scales a JobPool on its backlog: the operator serves external.metrics.k8s.io, the real
API server's aggregation layer proxies to it (an APIService, front-proxy client certificates),
and the real HPA controller of kube-controller-manager scales the pool through /scale."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from jobpool.queue import open_queue
from tests.e2e.operator_harness import apply, get, pool_manifest, start_operator, unique
from tests.helpers import ROOT, free_port, wait_until

HPA_EXAMPLE = ROOT / "examples/06-hpa/hpa.yaml"
APISERVICE = "v1beta1.external.metrics.k8s.io"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def serving_certificate(directory: Path, dns_name: str) -> tuple[Path, Path, str]:
    """A CA and a serving certificate for `dns_name` (what the APIService's caBundle vouches for)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        cwd=directory,
    )
    (directory / "serving.ext").write_text(f"subjectAltName=DNS:{dns_name}\nextendedKeyUsage=serverAuth\n")
    openssl(
        "req",
        *ec,
        "-keyout",
        "serving.key",
        "-out",
        "serving.csr",
        "-subj",
        "/CN=jobpool-external-metrics",
        cwd=directory,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "serving.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "serving.ext",
        "-out",
        "serving.crt",
        cwd=directory,
    )
    return directory / "serving.crt", directory / "serving.key", (directory / "ca.crt").read_text()


def raw(cluster, path: str) -> dict:
    return json.loads(cluster.kubectl("get", "--raw", path).stdout)


@pytest.fixture
def external_metrics(jobpool_crds, kube_namespace, redis_server, tmp_path):
    """The operator with its external metrics API registered as the cluster's APIService."""
    cluster, ns = jobpool_crds, kube_namespace
    service = "jobpool-external-metrics"
    cert, key, ca = serving_certificate(tmp_path, f"{service}.{ns}.svc")
    port = free_port()
    # the APIService is registered without a caBundle: the operator puts its CA there (--tls-ca-file)
    apply(
        cluster,
        ns,
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": APISERVICE},
            "spec": {
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "service": {"namespace": ns, "name": service, "port": port},
            },
        },
    )
    operator = start_operator(
        cluster,
        ns,
        redis_server.url,
        tmp_path / "operator.log",
        extra_args=(
            "--external-metrics-port",
            str(port),
            "--external-metrics-address",
            "127.0.0.1",
            "--tls-cert-file",
            str(cert),
            "--tls-private-key-file",
            str(key),
            "--tls-ca-file",
            str(tmp_path / "ca.crt"),
        ),
    )
    # The operator runs outside the cluster here: an ExternalName Service points the aggregator at it.
    apply(
        cluster,
        ns,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service},
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
        },
    )
    try:
        wait_until(
            lambda: (
                get(cluster, "", "apiservice", APISERVICE)["spec"].get("caBundle")
                == base64.b64encode(ca.encode()).decode()
            ),
            timeout=30,
            what="the operator's CA in the APIService",
        )
        wait_until(
            lambda: any(
                c["type"] == "Available" and c["status"] == "True"
                for c in (get(cluster, "", "apiservice", APISERVICE) or {})
                .get("status", {})
                .get("conditions", [])
            ),
            timeout=60,
            what="the external metrics APIService to be Available",
        )
        yield cluster, ns, operator, port
    finally:
        cluster.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
        cluster.kubectl("delete", "horizontalpodautoscalers", "--all", "-n", ns, check=False)
        cluster.kubectl("delete", "jobpools", "--all", "-n", ns, "--timeout=60s", check=False)
        operator.stop()
        print("---- operator log (tail) ----\n" + operator.logs()[-4000:])


def test_only_the_aggregation_layer_may_ask_the_operator_directly(external_metrics):
    _, ns, _, port = external_metrics
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    url = f"https://127.0.0.1:{port}/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/jobpool_backlog"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, context=context, timeout=5)
    assert refused.value.code == 403


def test_hpa_scales_a_jobpool_on_its_backlog_through_the_operators_external_metrics(
    external_metrics, redis_server, tmp_path
):
    cluster, ns, _, _ = external_metrics
    name = unique("hpa")
    apply(cluster, ns, pool_manifest(name, parallelism=1, concurrency=2))
    wait_until(lambda: get(cluster, ns, "deployment", f"{name}-workers"), what="the worker Deployment")
    hpa = (
        HPA_EXAMPLE.read_text()
        .replace("name: thumbnails", f"name: {name}")
        .replace("pool: thumbnails", f"pool: {name}")
    )
    apply(cluster, ns, hpa)

    async def submit(count: int) -> None:
        queue = open_queue(redis_server.url, ns, name)
        try:
            await queue.submit_many([1] * count)
        finally:
            await queue.close()

    submitted = time.monotonic()
    asyncio.run(submit(20))  # no worker runs them: the backlog stays at 20
    path = (
        f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/jobpool_backlog?labelSelector=pool%3D{name}"
    )
    values = wait_until(
        lambda: [i["value"] for i in raw(cluster, path)["items"]] == ["20"] or None,
        timeout=30,
        what="the backlog through the aggregated API",
    )
    assert values
    # target 4 jobs per worker pod: 20 jobs -> 5 pods (maxReplicas 10)
    wait_until(
        lambda: (p := get(cluster, ns, "jobpool", name)) and p["spec"].get("parallelism") == 5 and p,
        timeout=60,
        what="the HPA to set spec.parallelism to 5 through /scale",
    )
    reaction = time.monotonic() - submitted
    deployment = wait_until(
        lambda: (d := get(cluster, ns, "deployment", f"{name}-workers")) and d["spec"]["replicas"] == 5 and d,
        timeout=30,
        what="5 worker pods wanted",
    )
    status = get(cluster, ns, "hpa", name)["status"]
    (metric,) = status["currentMetrics"]
    assert metric["external"]["metric"]["name"] == "jobpool_backlog"
    assert status["desiredReplicas"] == 5
    # once the HPA runs, a larger backlog reaches the pool within a few sync periods: 40 jobs -> 10 pods
    submitted = time.monotonic()
    asyncio.run(submit(20))
    wait_until(
        lambda: (p := get(cluster, ns, "jobpool", name)) and p["spec"].get("parallelism") == 10,
        timeout=60,
        what="the HPA to set spec.parallelism to 10",
    )
    print(
        f"HPA reaction, submit -> spec.parallelism: first {reaction:.1f}s (new HPA and APIService), "
        f"then {time.monotonic() - submitted:.1f}s (sync period 2s); deployment replicas "
        f"{deployment['spec']['replicas']}"
    )


def test_a_renewed_certificate_is_served_and_trusted_without_a_restart(external_metrics, tmp_path):
    """The kubelet updates the mounted Secret in place: the operator loads the new chain, puts
    the new CA into the APIService, and the aggregated API stays readable; same process."""
    cluster, ns, operator, _ = external_metrics
    pid = operator.process.pid
    renewed = tmp_path / "renewed"
    renewed.mkdir()
    _, _, new_ca = serving_certificate(renewed, f"jobpool-external-metrics.{ns}.svc")
    for name in ("serving.key", "serving.crt", "ca.crt"):  # the files the operator was started with
        (tmp_path / name).write_bytes((renewed / name).read_bytes())
    wait_until(
        lambda: (
            get(cluster, "", "apiservice", APISERVICE)["spec"].get("caBundle")
            == base64.b64encode(new_ca.encode()).decode()
        ),
        timeout=60,
        what="the renewed CA in the APIService",
    )
    path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/jobpool_backlog"
    wait_until(
        lambda: cluster.kubectl("get", "--raw", path, check=False).returncode == 0,
        timeout=60,
        what="the aggregated API served with the renewed certificate",
    )
    assert operator.alive() and operator.process.pid == pid
    assert "loaded the renewed serving certificate" in operator.logs()


def test_chart_keeps_the_certificate_across_renders_and_upgrades(kube_cluster, kube_namespace, tmp_path):
    """No certificate in any render (two renders are equal); the hook makes it once into the
    Secret and keeps it when it runs again (an upgrade); the Service has no selector (the
    leader writes its EndpointSlice); the leader gets only the APIService and that slice."""
    from tests.e2e.test_chart import by_kind, helm, render

    assert not by_kind(render(kube_cluster), "APIService")
    docs = render(kube_cluster, "externalMetrics.enabled=true")
    (apiservice,) = by_kind(docs, "APIService")
    assert "caBundle" not in apiservice["spec"]
    assert not [s for s in by_kind(docs, "Secret") if s["metadata"]["name"].endswith("-external-metrics-tls")]
    (service,) = [
        s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "jp-operator-external-metrics"
    ]
    assert "selector" not in service["spec"]
    (deployment,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jp-operator"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--external-metrics-port=6443" in container["args"]
    assert "--external-metrics-service=jp-operator-external-metrics" in container["args"]
    assert {e["name"] for e in container["env"]} >= {"JOBPOOL_POD_IP", "JOBPOOL_POD_NAME"}
    (binding,) = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["namespace"] == "kube-system"]
    assert binding["roleRef"]["name"] == "extension-apiserver-authentication-reader"
    (cluster_role,) = [
        r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"].startswith("jp-operator-external")
    ]
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apiregistration.k8s.io"],
            "resources": ["apiservices"],
            "resourceNames": ["v1beta1.external.metrics.k8s.io"],
            "verbs": ["get", "patch"],
        }
    ]
    rendered = helm(
        kube_cluster,
        "template",
        "jp",
        str(ROOT / "charts/jobpool"),
        "--namespace",
        "ops",
        "--set",
        "externalMetrics.enabled=true",
    ).stdout
    assert (
        rendered
        == helm(
            kube_cluster,
            "template",
            "jp",
            str(ROOT / "charts/jobpool"),
            "--namespace",
            "ops",
            "--set",
            "externalMetrics.enabled=true",
        ).stdout
    )

    # the hook's command and RBAC, run as the chart renders them (kwok would not run its Job)
    (job,) = [
        d
        for d in by_kind(render(kube_cluster, "externalMetrics.enabled=true"), "Job")
        if d["metadata"]["name"] == "jp-operator-external-metrics-cert"
    ]
    args = [
        a.replace("--namespace=ops", f"--namespace={kube_namespace}").replace(".ops", f".{kube_namespace}")
        for a in job["spec"]["template"]["spec"]["containers"][0]["args"]
    ]
    env = {**kube_cluster.env, "KUBECONFIG": kube_cluster.kubeconfig}

    def run_hook() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "jobpool.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "made a new certificate" in run_hook()
    secret = json.loads(
        kube_cluster.kubectl(
            "get", "secret", "jp-operator-external-metrics-tls", "-n", kube_namespace, "-o", "json"
        ).stdout
    )
    for key in ("tls.crt", "ca.crt"):
        (tmp_path / key).write_bytes(base64.b64decode(secret["data"][key]))
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            "ca.crt",
            "-verify_hostname",
            f"jp-operator-external-metrics.{kube_namespace}.svc",
            "tls.crt",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "keeps its certificate" in run_hook()
    again = json.loads(
        kube_cluster.kubectl(
            "get", "secret", "jp-operator-external-metrics-tls", "-n", kube_namespace, "-o", "json"
        ).stdout
    )
    assert again["data"] == secret["data"]
