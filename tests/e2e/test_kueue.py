"""Team quotas with the real Kueue: examples/09-kueue's two teams' pools on one ClusterQueue.

Kueue's manager runs against the local control plane (tests/fixtures/kueue.py); both teams' pools
are backlogged, wanting 8 worker pods where the quota holds 4. Kueue admits 4; the others stay
scheduling-gated and their pool says WaitingForQuota with Kueue's message, while the operator's
autoscaler holds its decision (no thrash). When team A's backlog drains and its pods go, Kueue
admits team B's, whose local stand-in workers (one per Ready pod) drain its backlog in turn.
"""
from __future__ import annotations

import json
import secrets
import time

import pytest
import yaml

import jobpool
from tests.e2e.operator_harness import PodStandIns, condition, get, items, start_operator
from tests.fixtures import kueue as kueue_fixture
from tests.fixtures.cluster import _summary
from tests.helpers import ROOT, wait_until

pytestmark = [pytest.mark.kueue, pytest.mark.cluster]

EXAMPLE = ROOT / "examples/09-kueue"
QUOTA_PODS = 4        # the ClusterQueue's 1 CPU over the pods' 250m
JOBS_A, JOBS_B = 8, 8
JOB_SECONDS = 1.5


@pytest.fixture(scope="module")
def kueue(jobpool_crds, tmp_path_factory):
    running = kueue_fixture.Kueue(jobpool_crds, tmp_path_factory.mktemp("kueue")).start()
    try:
        yield running
    finally:
        running.stop()
        print("---- kueue log (tail) ----\n" + running.logs()[-3000:])


@pytest.fixture
def teams(jobpool_crds, kube_namespace):
    """A second namespace; both labelled for Kueue."""
    cluster, first = jobpool_crds, kube_namespace
    second = f"{first[:50]}-team-b"
    cluster.kubectl("create", "namespace", second)
    for ns in (first, second):
        cluster.kubectl("label", "namespace", ns, f"{kueue_fixture.MANAGED_LABEL}=true")
    wait_until(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", second, check=False)
               .returncode == 0, timeout=30, what="the second namespace's default service account")
    try:
        yield first, second
    finally:
        cluster.kubectl("delete", "jobpools", "--all", "-n", second, "--timeout=60s", check=False)
        cluster.kubectl("delete", "namespace", second, "--wait=false", "--ignore-not-found", check=False)


def example(namespaces: dict[str, str], cluster_queue: str) -> list[dict]:
    """examples/09-kueue in the test's namespaces, on a ClusterQueue of its own."""
    docs = [d for f in ("queues.yaml", "jobpool.yaml") for d in yaml.safe_load_all((EXAMPLE / f).read_text()) if d]
    for doc in docs:
        if doc["kind"] == "ClusterQueue":
            doc["metadata"]["name"] = cluster_queue
        if doc["kind"] == "LocalQueue":
            doc["spec"]["clusterQueue"] = cluster_queue
        if "namespace" in doc["metadata"]:
            doc["metadata"]["namespace"] = namespaces[doc["metadata"]["namespace"]]
        if doc["kind"] == "JobPool":
            doc["spec"]["drainSeconds"] = 2
    return docs


def gated(pod: dict) -> bool:
    return any(g["name"] == "kueue.x-k8s.io/admission" for g in pod["spec"].get("schedulingGates") or [])


def live(cluster, ns: str, pool: str) -> list[dict]:
    return [p for p in items(cluster, ns, "pods", f"jobpool.dev/pool={pool}") if not p["metadata"].get("deletionTimestamp")]


@pytest.mark.timeout(300)
def test_two_teams_share_one_cluster_queue_and_the_waiting_team_says_why(
        kueue, jobpool_crds, teams, redis_server, tmp_path):
    cluster = jobpool_crds
    ns_a, ns_b = teams
    cluster_queue = f"teams-{secrets.token_hex(3)}"
    docs = example({"team-a": ns_a, "team-b": ns_b}, cluster_queue)
    operator = start_operator(cluster, ns_a, redis_server.url, tmp_path / "operator.log",
                              extra_args=("--namespace", ns_b, "--kueue"))
    stand_ins = []
    marks: dict[str, float] = {}
    try:
        cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                             "items": [d for d in docs if d["kind"] != "JobPool"]}))
        cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                             "items": [d for d in docs if d["kind"] == "JobPool"]}))
        a, b = "reports", "thumbnails"
        stand_ins = [PodStandIns(cluster, ns_a, a, tmp_path / "a"), PodStandIns(cluster, ns_b, b, tmp_path / "b")]
        client_a, client_b = jobpool.Client(redis_server.url, ns_a, a), jobpool.Client(redis_server.url, ns_b, b)
        started = time.monotonic()
        ids_a = client_a.submit_many([JOB_SECONDS] * JOBS_A)
        wait_until(lambda: sum(not gated(p) for p in live(cluster, ns_a, a)) == QUOTA_PODS, timeout=60,
                   what="team A's 4 pods admitted")
        marks["team A: 4 pods admitted"] = time.monotonic() - started
        ids_b = client_b.submit_many([JOB_SECONDS] * JOBS_B)

        # Team B's pods wait for quota; its pool says so with Kueue's words; nobody exceeds the quota.
        def waiting():
            c = condition(get(cluster, ns_b, "jobpool", b), "Progressing")
            return c.get("reason") == "WaitingForQuota" and "insufficient unused quota" in c["message"] and c
        waiting_since = time.monotonic()
        cond = wait_until(waiting, timeout=60, what="team B WaitingForQuota with Kueue's message")
        marks["team B: WaitingForQuota"] = time.monotonic() - started
        assert cond["message"].startswith(f"{QUOTA_PODS} of {QUOTA_PODS} worker pods wait for quota (Kueue): "), cond
        desired_b, admitted_max = set(), 0
        while client_a.status().succeeded < JOBS_A and time.monotonic() - waiting_since < 60:
            admitted = sum(not gated(p) for ns, pool in ((ns_a, a), (ns_b, b)) for p in live(cluster, ns, pool))
            admitted_max = max(admitted_max, admitted)
            desired_b.add(get(cluster, ns_b, "jobpool", b)["status"]["desiredReplicas"])
            time.sleep(0.3)
        assert admitted_max <= QUOTA_PODS, f"{admitted_max} pods admitted over a quota of {QUOTA_PODS}"
        # The autoscaler holds its decision for the gated pods: no thrash while they wait.
        assert desired_b == {QUOTA_PODS}, desired_b

        # Team A drains; its pods go; Kueue admits team B's, whose jobs then all succeed.
        assert all(client_a.result(i, timeout=60) is not None for i in ids_a)
        marks["team A: backlog drained"] = time.monotonic() - started
        wait_until(lambda: sum(not gated(p) for p in live(cluster, ns_b, b)) >= 1, timeout=60,
                   what="team B's first pod admitted")
        marks["team B: first pod admitted"] = time.monotonic() - started
        assert all(client_b.result(i, timeout=90) is not None for i in ids_b)
        marks["team B: backlog drained"] = time.monotonic() - started
        assert client_b.status().retried == 0 and client_a.status().retried == 0
        wait_until(lambda: condition(get(cluster, ns_b, "jobpool", b), "Progressing").get("reason")
                   != "WaitingForQuota", timeout=60, what="team B no longer waiting for quota")
        client_a.close()
        client_b.close()
    finally:
        for stand_in in stand_ins:
            stand_in.stop()
        cluster.kubectl("delete", "jobpools", "--all", "-n", ns_a, "--timeout=60s", check=False)
        cluster.kubectl("delete", "jobpools", "--all", "-n", ns_b, "--timeout=60s", check=False)
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=false", check=False, input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": [d for d in docs if d["kind"] != "JobPool"]}))
        operator.stop()
        print("---- operator log (tail) ----\n" + operator.logs()[-4000:])
        timeline = ", ".join(f"{what} +{seconds:.1f}s" for what, seconds in marks.items())
        print(f"kueue timeline: {timeline}")
        _summary.append(f"kueue: {timeline}")
