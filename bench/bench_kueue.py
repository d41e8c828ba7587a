"""`make bench-kueue`: how fast Kueue and the operator turn backlogs into admitted worker pods.

examples/09-kueue (two teams' autoscaled pools, one ClusterQueue of 4 pods' worth of CPU) on the
local control plane with the real Kueue, the operator (--kueue) and one local worker per Ready pod
(tests/fixtures/kueue.py `TwoTeams`, the scenario tests/e2e/test_kueue.py asserts on), played
--rounds times. Printed, in seconds, median (min - max): from team A's submit to its first and
its fourth pod admitted; from team B's submit (A holding the quota) to B's pool saying
WaitingForQuota; from A's backlog drained to B's first pod admitted; B's backlog drained.

Usage: python bench/bench_kueue.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.operator_harness import install_crds  # noqa: E402
from tests.fixtures import kueue as kueue_fixture  # noqa: E402
from tests.fixtures.cluster import BIN_DIR, KubeCluster, localcluster  # noqa: E402
from tests.fixtures.redis import RedisServer  # noqa: E402
from tests.helpers import wait_until  # noqa: E402


def namespace(cluster: KubeCluster, name: str) -> str:
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, f"{kueue_fixture.MANAGED_LABEL}=true")
    wait_until(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
        what=f"{name}'s default service account",
    )
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="jobpool-bench-kueue-"))
    local = localcluster.LocalCluster(root=work / "cluster", bin_dir=BIN_DIR, bind_to_parent=True).start()
    cluster = KubeCluster(
        kubeconfig=str(local.kubeconfig), server=local.server, env=local.env(), bin_dir=BIN_DIR, cluster=local
    )
    (work / "redis").mkdir()
    redis = RedisServer(work / "redis")
    redis.start()
    kueue = None
    rounds: list[dict[str, float]] = []
    try:
        install_crds(cluster)
        kueue = kueue_fixture.Kueue(cluster, work)
        kueue.start()
        for n in range(args.rounds):
            teams = (namespace(cluster, f"team-a-{n}"), namespace(cluster, f"team-b-{n}"))
            round_dir = work / f"round-{n}"
            round_dir.mkdir()
            run = kueue_fixture.TwoTeams(cluster, redis.url, teams, round_dir)
            try:
                run.play()
            finally:
                run.close()
            m = run.marks
            rounds.append(
                {
                    "team A submit -> first pod admitted": m["team A: first pod admitted"],
                    "team A submit -> 4 pods admitted (the quota)": m["team A: 4 pods admitted"],
                    "team B submit -> pool WaitingForQuota": m["team B: WaitingForQuota"]
                    - m["team B: backlog submitted"],
                    "team A drained -> team B's first pod admitted": m["team B: first pod admitted"]
                    - m["team A: backlog drained"],
                    "team B submit -> its backlog drained": m["team B: backlog drained"]
                    - m["team B: backlog submitted"],
                }
            )
            print(f"round {n + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in rounds[-1].items()), flush=True)
    finally:
        if kueue is not None:
            kueue.stop()
        redis.stop()
        local.stop()
    print(f"\nKueue reaction on the local control plane ({args.rounds} rounds, seconds: median (min - max)):")
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        print(f"  {key:<48} {statistics.median(values):6.2f}  ({min(values):.2f} - {max(values):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
