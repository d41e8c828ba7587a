"""An HPA scales a JobPool on its backlog: the operator serves external.metrics.k8s.io, the real
API server's aggregation layer proxies to it (an APIService, front-proxy client certificates),
and the real HPA controller of kube-controller-manager scales the pool through /scale."""
from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
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
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=test-ca",
            cwd=directory)
    (directory / "serving.ext").write_text(f"subjectAltName=DNS:{dns_name}\nextendedKeyUsage=serverAuth\n")
    openssl("req", *ec, "-keyout", "serving.key", "-out", "serving.csr", "-subj", "/CN=jobpool-external-metrics", cwd=directory)
    openssl("x509", "-req", "-in", "serving.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", "serving.ext", "-out", "serving.crt", cwd=directory)
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
    operator = start_operator(cluster, ns, redis_server.url, tmp_path / "operator.log", extra_args=(
        "--external-metrics-port", str(port), "--external-metrics-address", "127.0.0.1",
        "--tls-cert-file", str(cert), "--tls-private-key-file", str(key)))
    # The operator runs outside the cluster here: an ExternalName Service points the aggregator at it.
    apply(cluster, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": service},
                        "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}})
    apply(cluster, ns, {
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": APISERVICE},
        "spec": {"group": "external.metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                 "versionPriority": 100, "caBundle": base64.b64encode(ca.encode()).decode(),
                 "service": {"namespace": ns, "name": service, "port": port}}})
    try:
        wait_until(lambda: any(c["type"] == "Available" and c["status"] == "True" for c in
                               (get(cluster, "", "apiservice", APISERVICE) or {}).get("status", {}).get(
                                   "conditions", [])),
                   timeout=60, what="the external metrics APIService to be Available")
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


def test_hpa_scales_a_jobpool_on_its_backlog_through_the_operators_external_metrics(external_metrics, redis_server,
                                                                                   tmp_path):
    cluster, ns, _, _ = external_metrics
    name = unique("hpa")
    apply(cluster, ns, pool_manifest(name, parallelism=1, concurrency=2))
    wait_until(lambda: get(cluster, ns, "deployment", f"{name}-workers"), what="the worker Deployment")
    hpa = HPA_EXAMPLE.read_text().replace("name: thumbnails", f"name: {name}").replace(
        "pool: thumbnails", f"pool: {name}")
    apply(cluster, ns, hpa)

    async def submit(count: int) -> None:
        queue = open_queue(redis_server.url, ns, name)
        try:
            await queue.submit_many([1] * count)
        finally:
            await queue.close()

    submitted = time.monotonic()
    asyncio.run(submit(20))      # no worker runs them: the backlog stays at 20
    path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/jobpool_backlog?labelSelector=pool%3D{name}"
    values = wait_until(lambda: [i["value"] for i in raw(cluster, path)["items"]] == ["20"] or None, timeout=30,
                        what="the backlog through the aggregated API")
    assert values
    # target 4 jobs per worker pod: 20 jobs -> 5 pods (maxReplicas 10)
    pool = wait_until(lambda: (p := get(cluster, ns, "jobpool", name)) and p["spec"].get("parallelism") == 5 and p,
                      timeout=60, what="the HPA to set spec.parallelism to 5 through /scale")
    reaction = time.monotonic() - submitted
    deployment = wait_until(lambda: (d := get(cluster, ns, "deployment", f"{name}-workers")) and
                            d["spec"]["replicas"] == 5 and d, timeout=30, what="5 worker pods wanted")
    status = get(cluster, ns, "hpa", name)["status"]
    (metric,) = status["currentMetrics"]
    assert metric["external"]["metric"]["name"] == "jobpool_backlog"
    assert status["desiredReplicas"] == 5
    # once the HPA runs, a larger backlog reaches the pool within a few sync periods: 40 jobs -> 10 pods
    submitted = time.monotonic()
    asyncio.run(submit(20))
    wait_until(lambda: (p := get(cluster, ns, "jobpool", name)) and p["spec"].get("parallelism") == 10,
               timeout=60, what="the HPA to set spec.parallelism to 10")
    print(f"HPA reaction, submit -> spec.parallelism: first {reaction:.1f}s (new HPA and APIService), "
          f"then {time.monotonic() - submitted:.1f}s (sync period 2s); deployment replicas "
          f"{deployment['spec']['replicas']}")


def test_chart_registers_the_operators_external_metrics_with_a_certificate_it_vouches_for(kube_cluster, tmp_path):
    from tests.e2e.test_chart import by_kind, render
    assert not by_kind(render(kube_cluster), "APIService")
    docs = render(kube_cluster, "externalMetrics.enabled=true")
    (apiservice,) = by_kind(docs, "APIService")
    service = apiservice["spec"]["service"]
    (secret,) = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"].endswith("-external-metrics-tls")]
    (tmp_path / "ca.crt").write_bytes(base64.b64decode(apiservice["spec"]["caBundle"]))
    (tmp_path / "tls.crt").write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    verify = subprocess.run(["openssl", "verify", "-CAfile", "ca.crt", "-verify_hostname",
                             f"{service['name']}.{service['namespace']}.svc", "tls.crt"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    (deployment,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jp-operator"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--external-metrics-port=6443" in container["args"]
    assert {p["name"] for p in container["ports"]} >= {"external-metrics"}
    (binding,) = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["namespace"] == "kube-system"]
    assert binding["roleRef"]["name"] == "extension-apiserver-authentication-reader"
