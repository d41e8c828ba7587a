"""Team quotas with the real Kueue: examples/09-kueue's two teams' pools on one ClusterQueue.

Kueue's manager runs against the local control plane (tests/fixtures/kueue.py); both teams' pools
are backlogged, wanting 8 worker pods where the quota holds 4. Kueue admits 4; the others stay
scheduling-gated and their pool says WaitingForQuota with Kueue's message, while the operator's
autoscaler holds its decision (no thrash). When team A's backlog drains and its pods go, Kueue
admits team B's, whose local stand-in workers (one per Ready pod) drain its backlog in turn.
"""

from __future__ import annotations

import pytest

from tests.fixtures import kueue as kueue_fixture
from tests.fixtures.cluster import _summary
from tests.helpers import wait_until

pytestmark = [pytest.mark.kueue, pytest.mark.cluster]


@pytest.fixture(scope="module")
def kueue(jobpool_crds, tmp_path_factory):
    running = kueue_fixture.Kueue(jobpool_crds, tmp_path_factory.mktemp("kueue"))
    try:
        yield running.start()
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
    wait_until(
        lambda: (
            cluster.kubectl("get", "serviceaccount", "default", "-n", second, check=False).returncode == 0
        ),
        timeout=30,
        what="the second namespace's default service account",
    )
    try:
        yield first, second
    finally:
        cluster.kubectl("delete", "jobpools", "--all", "-n", second, "--timeout=60s", check=False)
        cluster.kubectl("delete", "namespace", second, "--wait=false", "--ignore-not-found", check=False)


@pytest.mark.timeout(300)
def test_two_teams_share_one_cluster_queue_and_the_waiting_team_says_why(
    kueue, jobpool_crds, teams, redis_server, tmp_path
):
    run = kueue_fixture.TwoTeams(jobpool_crds, redis_server.url, teams, tmp_path)
    try:
        run.play()
    finally:
        run.close()
        timeline = ", ".join(f"{what} +{seconds:.1f}s" for what, seconds in run.marks.items())
        print(f"kueue timeline: {timeline}")
        _summary.append(f"kueue: {timeline}")
    quota = kueue_fixture.QUOTA_PODS
    # Team B's pods waited for quota, and its pool said so in Kueue's words.
    assert run.waiting["message"].startswith(f"{quota} of {quota} worker pods wait for quota (Kueue): "), (
        run.waiting
    )
    assert "insufficient unused quota" in run.waiting["message"], run.waiting
    assert run.admitted_max <= quota, f"{run.admitted_max} pods admitted over a quota of {quota}"
    # The autoscaler held its decision for the gated pods: no thrash while they waited.
    assert run.desired_b == {quota}, run.desired_b
    # Team B's pods were admitted once team A's went, and every job of both ran once.
    assert run.succeeded == (kueue_fixture.JOBS, kueue_fixture.JOBS) and run.retried == 0
    assert run.marks["team B: first pod admitted"] > run.marks["team A: backlog drained"]
