"""Monitoring as shipped, against the real tools: the chart renders its ServiceMonitor,
PodMonitor, PrometheusRule and dashboard from the same files promtool tests; and a real
Prometheus, scraping a real operator and real workers through a small batch, answers every
dashboard panel's query and every series that an alert reads, and raises the alerts that the
batch provokes (dead letters, an unreachable queue)."""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.e2e.operator_harness import apply, pool_manifest, start_operator, unique
from tests.e2e.test_chart import by_kind, render
from tests.helpers import ROOT, WorkerProcess, free_port, stop_process, wait_until

MONITORING = ROOT / "charts/jobpool/monitoring"
RULES = MONITORING / "prometheus-rules.yaml"
DASHBOARD = MONITORING / "dashboard.json"
RUNBOOK_BASE = (
    yaml.safe_load((ROOT / "charts/jobpool/values.yaml").read_text())["monitoring"]["prometheusRule"][
        "runbookBaseUrl"
    ]
    + "#"
)  # what the rule file's runbook_urls start with
RATE_WINDOW = "20s"  # stands in for Grafana's $__rate_interval at a 1 s scrape interval


def panel_queries(namespace: str) -> dict[str, str]:
    """Every panel target's PromQL, with the dashboard's variables filled in as Grafana would."""
    queries = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = (
                target["expr"]
                .replace("$__rate_interval", RATE_WINDOW)
                .replace("$namespace", namespace)
                .replace("$pool", ".*")
            )
            queries[f"{panel['title']} / {target['legendFormat']}"] = expr
    return queries


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


SELECTOR = re.compile(r"\b(jobpool_[a-z_]+|up)\b(\{[^}]*\})?")


def alert_selectors(expr: str) -> set[str]:
    """The series selectors an alert expression reads, e.g. `jobpool_jobs_total{outcome="succeeded"}`."""
    return {name + (matchers or "") for name, matchers in SELECTOR.findall(expr)}


# -- the chart -------------------------------------------------------------------------------


def test_monitoring_objects_are_off_by_default(kube_cluster):
    kinds = {doc["kind"] for doc in render(kube_cluster)}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not [
        d for d in by_kind(render(kube_cluster), "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]


def test_chart_renders_monitors_rules_and_dashboard_from_the_tested_files(kube_cluster):
    docs = render(
        kube_cluster,
        "monitoring.serviceMonitor.enabled=true",
        "monitoring.podMonitor.enabled=true",
        "monitoring.prometheusRule.enabled=true",
        "monitoring.dashboard.enabled=true",
        "monitoring.prometheusRule.runbookBaseUrl=https://wiki.example/jobpool",
        "monitoring.serviceMonitor.labels.release=kube-prometheus",
    )
    (service_monitor,) = by_kind(docs, "ServiceMonitor")
    assert service_monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert service_monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    (operator_service,) = [
        s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "jp-operator-metrics"
    ]
    assert (
        service_monitor["spec"]["selector"]["matchLabels"].items()
        <= operator_service["metadata"]["labels"].items()
    )
    assert service_monitor["spec"]["endpoints"][0]["port"] == operator_service["spec"]["ports"][0]["name"]

    (pod_monitor,) = by_kind(docs, "PodMonitor")
    assert pod_monitor["spec"]["namespaceSelector"] == {"any": True}
    from jobpool.controller import builders

    labels = builders.pool_labels("any-pool")
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"

    (rule,) = by_kind(docs, "PrometheusRule")
    expected = yaml.safe_load(
        RULES.read_text()
        .replace(RUNBOOK_BASE, "https://wiki.example/jobpool#")
        .replace('persistentvolumeclaim="jobpool-redis"', 'persistentvolumeclaim="jp-redis", namespace="ops"')
    )["groups"]
    assert rule["spec"]["groups"] == expected
    assert "{{ $labels.pool }}" in json.dumps(rule["spec"]["groups"])  # Prometheus templates survive Helm

    (dashboard,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == "jp-operator-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["jobpool.json"]) == json.loads(DASHBOARD.read_text())


def test_pod_monitor_is_limited_to_the_watched_namespaces(kube_cluster):
    docs = render(kube_cluster, "monitoring.podMonitor.enabled=true", "watchNamespaces={media,batch}")
    (pod_monitor,) = by_kind(docs, "PodMonitor")
    assert pod_monitor["spec"]["namespaceSelector"] == {"matchNames": ["media", "batch"]}


# -- a real Prometheus -----------------------------------------------------------------------


class Prometheus:
    def __init__(self, directory: Path, operator_port: int, workers: dict[str, int]):
        self.port = free_port()
        self.directory = directory
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "jobpool-operator",
                    "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}],
                },
                {
                    "job_name": "jobpool-worker",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{port}"], "labels": {"pod": pod}}
                        for pod, port in workers.items()
                    ],
                },
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail(
                "prometheus is missing: run `make prometheus` (Debian's prometheus package)", pytrace=False
            )
        self.log = open(directory / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._ready, timeout=30, what="Prometheus to be ready")

    def _get(self, path: str, **params: str):
        url = f"http://127.0.0.1:{self.port}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def _ready(self) -> bool:
        assert self.process.poll() is None, (self.directory / "prometheus.log").read_text()[-2000:]
        try:
            return "Ready" in self._get("/-/ready")
        except OSError:
            return False

    def query(self, expr: str) -> list[dict]:
        reply = json.loads(self._get("/api/v1/query", query=expr))
        assert reply["status"] == "success", reply
        return reply["data"]["result"]

    def query_range(self, expr: str, start: float) -> list[dict]:
        """The series of `expr` from `start` until now, one point a second, as a panel draws it."""
        reply = json.loads(
            self._get(
                "/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{time.time():.3f}", step="1"
            )
        )
        assert reply["status"] == "success", reply
        return reply["data"]["result"]

    def alerts(self) -> list[dict]:
        return json.loads(self._get("/api/v1/alerts"))["data"]["alerts"]

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def has_number(result: list[dict]) -> bool:
    """Some point of some series is a number (a panel would draw it)."""
    return any(not math.isnan(float(value)) for series in result for _, value in series["values"])


def test_real_prometheus_answers_every_panel_and_alert_and_fires_what_the_batch_provokes(
    jobpool_crds, kube_namespace, redis_server, tmp_path
):
    cluster, ns = jobpool_crds, kube_namespace
    pool, unreachable = unique("frames"), unique("lost")
    operator = start_operator(cluster, ns, redis_server.url, tmp_path / "operator.log")
    worker_ports = {f"{pool}-workers-{i}": free_port() for i in range(2)}
    workers = [
        WorkerProcess(
            redis_server.url,
            ns,
            pool,
            "tasks:slow",
            concurrency=4,
            metrics_port=port,
            worker_id=pod,
            max_attempts=1,
            drain_seconds=5,
        )
        for pod, port in worker_ports.items()
    ]
    prometheus = Prometheus(tmp_path, operator.metrics_port, worker_ports)
    try:
        # 0.2 s jobs keep 8 slots busy for ~8 s (several scrapes); strings make tasks.slow fail -> dead letters
        items = [0.2] * 300 + ["not a number"] * 5
        apply(
            cluster,
            ns,
            pool_manifest(
                pool,
                parallelism=2,
                concurrency=4,
                jobs={"items": items},
                retry={"maxAttempts": 1},
                worker={"image": "registry.example/jobpool-examples:0.1", "handler": "tasks:slow"},
            ),
        )
        closed = free_port()
        apply(cluster, ns, pool_manifest(unreachable, queue={"url": f"redis://127.0.0.1:{closed}/0"}))

        started = time.time()
        answered: set[str] = set()
        queries = panel_queries(ns)

        def every_panel_answered() -> list[str] | bool:
            for name, expr in queries.items():
                if name not in answered and has_number(prometheus.query_range(expr, started)):
                    answered.add(name)
            missing = sorted(set(queries) - answered)
            return not missing or False

        try:
            wait_until(
                every_panel_answered, timeout=90, interval=1, what="every dashboard panel to return data"
            )
        except pytest.fail.Exception:
            targets = [
                (t["scrapePool"], t["health"], t["lastError"])
                for t in json.loads(prometheus._get("/api/v1/targets"))["data"]["activeTargets"]
            ]
            counts = [
                (s["metric"].get("pod"), s["value"][1])
                for s in prometheus.query("jobpool_job_duration_seconds_count")
            ]
            worker_up = [
                (s["metric"].get("pod"), [v for _, v in s["values"]])
                for s in prometheus.query_range('up{job="jobpool-worker"}', started)
            ]
            pytest.fail(
                f"panels without data: {sorted(set(queries) - answered)}; scrape targets: {targets}; "
                f"attempts per worker: {counts}; worker scrapes since the batch began: {worker_up}"
            )

        for rule in alert_rules():
            for selector in alert_selectors(rule["expr"]):
                assert prometheus.query(selector), f"{rule['alert']}: nothing in Prometheus for {selector}"

        def firing(name: str, **labels: str):
            return [
                a
                for a in prometheus.alerts()
                if a["labels"]["alertname"] == name
                and all(a["labels"].get(k) == v for k, v in labels.items())
                and a["state"] in ("pending", "firing")
            ]

        wait_until(
            lambda: firing("JobPoolDeadLettersGrowing", namespace=ns, pool=pool),
            timeout=60,
            interval=1,
            what="JobPoolDeadLettersGrowing for the pool with failing jobs",
        )
        wait_until(
            lambda: firing("JobPoolQueueUnreachable", namespace=ns, pool=unreachable),
            timeout=60,
            interval=1,
            what="JobPoolQueueUnreachable for the pool on a closed port",
        )
        assert not firing("JobPoolQueueUnreachable", namespace=ns, pool=pool)
        assert not firing("JobPoolOperatorDown")
    finally:
        prometheus.stop()
        for worker in workers:  # all drain at once
            worker.send(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        cluster.kubectl("delete", "jobpools", "--all", "-n", ns, "--timeout=60s", check=False)
        operator.stop()
