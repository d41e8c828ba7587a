"""The chart's Role is exactly what the operator needs: with it, the operator runs a scenario
that uses every verb (two pools, one on its own Secret, one on the administered queue; a busy
pod's deletion cost; a PDB made and removed; a credential rotation; both pools deleted), and
without any single one of its verbs the same scenario fails."""

from __future__ import annotations

import concurrent.futures
import copy
import re
import subprocess
import time

import pytest
import redis as redis_lib
import yaml

import jobpool
from jobpool.queue import acl
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
from tests.helpers import ROOT, WorkerProcess, wait_until

CHART = ROOT / "charts/jobpool"
FORBIDDEN = re.compile(r"forbidden|Forbidden")
ROLE = "jp-operator"


def rendered(cluster, ns):
    out = subprocess.run(
        [
            cluster.bin("helm"),
            "template",
            "jp",
            str(CHART),
            "--namespace",
            ns,
            "--set",
            f"watchNamespaces={{{ns}}}",
            "--set",
            "redis.enabled=false",
            "--set",
            "admissionPolicy.enabled=false",
            "--set",
            "aggregatedRoles.enabled=false",
        ],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [
        d for d in yaml.safe_load_all(out) if d and d["kind"] in ("ServiceAccount", "Role", "RoleBinding")
    ]


def verbs_of(role):
    return [(index, verb) for index, rule in enumerate(role["rules"]) for verb in rule["verbs"]]


def without(role, index, verb):
    mutated = copy.deepcopy(role)
    mutated["rules"][index]["verbs"].remove(verb)
    if not mutated["rules"][index]["verbs"]:
        del mutated["rules"][index]
    return mutated


class Scenario:
    """One operator run under a given Role; `run` returns the step that failed, or None."""

    def __init__(self, cluster, ns, redis_server, log_path):
        self.cluster, self.ns, self.redis_server = cluster, ns, redis_server
        token = cluster.kubectl("create", "token", f"{ROLE}", "-n", ns, "--duration=1h").stdout.strip()
        self.kubeconfig = kubeconfig_for_token(cluster, token, log_path.with_suffix(".kubeconfig"))
        self.operator = OperatorProcess(
            cluster,
            ns,
            None,
            log_path,
            kubeconfig=self.kubeconfig,
            extra_args=("--admin-queue", redis_server.url),
        )
        self.own, self.managed = unique("own"), unique("managed")

    def until(self, check, timeout=30.0) -> bool:
        """Poll `check`; False as soon as the operator was refused anything, died, or time is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if FORBIDDEN.search(self.operator.logs()) or not self.operator.alive():
                return False
            try:
                if check():
                    return True
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.1)
        return False

    def ready(self, name):
        return condition(get(self.cluster, self.ns, "jobpool", name), "Ready").get("status") == "True"

    def run(self) -> str | None:
        cluster, ns, own, managed = self.cluster, self.ns, self.own, self.managed
        self.operator.start()
        if not self.until(self.operator.holds_lease):
            return "lease"
        apply(
            cluster,
            ns,
            pool_manifest(
                own, parallelism=2, drainSeconds=0, queue={"urlSecretRef": {"name": "queue", "key": "url"}}
            ),
        )
        apply(cluster, ns, pool_manifest(managed, parallelism=1, drainSeconds=0))
        if not self.until(lambda: self.ready(own) and self.ready(managed)):
            return "both pools Ready"
        if not self.until(
            lambda: any(
                e.get("reason") == "Ready" or "Ready" in e.get("message", "")
                for e in items(cluster, ns, "events")
                if e["involvedObject"].get("name") == own
            )
        ):
            return "an Event for the pool"
        if not self.until(lambda: len(items(cluster, ns, "pods", f"jobpool.dev/pool={own}")) == 2):
            return "two worker pods"
        pods = sorted(p["metadata"]["name"] for p in items(cluster, ns, "pods", f"jobpool.dev/pool={own}"))
        worker = WorkerProcess(
            self.redis_server.url, ns, own, "tasks:slow", concurrency=2, worker_id=pods[0], drain_seconds=5
        )
        try:
            jobpool.Client(self.redis_server.url, ns, own).submit_many([2, 2])
            busy = self.until(
                lambda: (
                    (get(cluster, ns, "pod", pods[0])["metadata"].get("annotations") or {}).get(
                        "controller.kubernetes.io/pod-deletion-cost"
                    )
                    == "200"
                )
            )
        finally:
            worker.stop()
        if not busy:
            return "the busy pod's deletion cost"
        cluster.kubectl(
            "patch", "jobpool", own, "-n", ns, "--type=merge", "-p", '{"spec": {"parallelism": 1}}'
        )
        if not self.until(lambda: get(cluster, ns, "pdb", f"{own}-workers") is None):
            return "the PDB removed at one pod"
        secret = get(cluster, ns, "secret", f"{managed}-queue")
        cluster.kubectl("annotate", "jobpool", managed, "-n", ns, "jobpool.dev/rotate-credentials=again")
        if not self.until(
            lambda: (
                get(cluster, ns, "secret", f"{managed}-queue")["data"]["password"]
                != secret["data"]["password"]
            )
        ):
            return "the rotated Secret"
        cluster.kubectl("delete", "jobpool", own, managed, "-n", ns, "--wait=false")
        if not self.until(lambda: not items(cluster, ns, "jobpools")):
            return "both pools deleted (finalizer)"
        return None

    def clean_up(self):
        self.operator.stop()
        for name in (self.own, self.managed):
            self.cluster.kubectl(
                "patch",
                "jobpool",
                name,
                "-n",
                self.ns,
                "--type=merge",
                "-p",
                '{"metadata": {"finalizers": null}}',
                check=False,
            )
            self.cluster.kubectl(
                "delete", "jobpool", name, "-n", self.ns, "--ignore-not-found", "--wait=false", check=False
            )
            admin = redis_lib.Redis.from_url(self.redis_server.url)
            admin.execute_command("ACL", "DELUSER", *(acl.user_name(self.ns, name, r) for r in acl.ROLES))


LANES = 3  # namespaces whose operators run the per-verb scenarios side by side


def prepare(cluster, ns, redis_server):
    """The Role's ServiceAccount and binding, and the pool's queue Secret, in `ns`; the Role itself."""
    objects = rendered(cluster, ns)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(objects))
    cluster.kubectl(
        "-n", ns, "create", "secret", "generic", "queue", f"--from-literal=url={redis_server.url}"
    )
    (role,) = [d for d in objects if d["kind"] == "Role" and d["metadata"]["name"] == ROLE]
    return role


@pytest.mark.timeout(900)  # one operator run per verb of the Role, LANES at a time
def test_the_operator_needs_every_verb_of_the_charts_role_and_no_more(
    jobpool_crds, kube_namespace, redis_server, tmp_path
):
    cluster = jobpool_crds
    lanes = [kube_namespace] + [f"{kube_namespace[:55]}-{lane}" for lane in range(1, LANES)]
    for ns in lanes[1:]:
        cluster.kubectl("create", "namespace", ns)
    try:
        for ns in lanes[1:]:
            wait_until(
                lambda: (
                    cluster.kubectl("get", "serviceaccount", "default", "-n", ns, check=False).returncode == 0
                ),
                timeout=30,
                what=f"namespace {ns}'s default service account",
            )
        role, *_ = [prepare(cluster, ns, redis_server) for ns in lanes]

        def run_with(ns, rules_role, label):
            rules_role = {**rules_role, "metadata": {**rules_role["metadata"], "namespace": ns}}
            cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(rules_role))
            scenario = Scenario(cluster, ns, redis_server, tmp_path / f"{label}.log")
            try:
                return scenario.run(), scenario.operator.logs()
            finally:
                scenario.clean_up()

        failed, logs = run_with(lanes[0], role, "full")
        assert failed is None, f"with the chart's Role the scenario failed at: {failed}\n{logs[-4000:]}"

        def without_verb(ns, index, verb):
            """True when the scenario still ran to the end without `verb` of rule `index`."""
            rule = role["rules"][index]
            mutated = without(role, index, verb)
            resource, _, subresource = rule["resources"][0].partition("/")
            account = f"--as=system:serviceaccount:{ns}:{ROLE}"
            can_i = [
                "auth",
                "can-i",
                verb,
                f"{resource}.{rule['apiGroups'][0]}".rstrip("."),
                "-n",
                ns,
                account,
                *(["--subresource", subresource] if subresource else []),
            ]
            mutated["metadata"]["namespace"] = ns
            cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(mutated))
            deadline = time.monotonic() + 10  # the authorizer sees the change before the operator starts
            while cluster.kubectl(*can_i, check=False).stdout.strip() != "no" and time.monotonic() < deadline:
                time.sleep(0.1)
            failed, _ = run_with(ns, mutated, f"without-{index}-{verb}")
            return failed is None

        cases = verbs_of(role)

        def lane(number):
            return [
                (rule, verb)
                for i, (index, verb) in enumerate(cases)
                if i % LANES == number
                for rule in [index]
                if without_verb(lanes[number], index, verb)
            ]

        with concurrent.futures.ThreadPoolExecutor(LANES) as pool:
            unneeded = [
                (role["rules"][index]["resources"], verb)
                for found in pool.map(lane, range(LANES))
                for index, verb in found
            ]
        assert unneeded == [], f"the operator ran the whole scenario without: {unneeded}"
    finally:
        for ns in lanes[1:]:
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
