"""`jobpool` in cluster mode against the local control plane: the pool's queue is found from its
JobPool (spec.queue.url, spec.queue.urlSecretRef, or the Secret the operator makes) through the
kubeconfig, the namespace from -n or the context, and a missing pool is one NotFound line."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobpool.controller import builders
from jobpool.queue import open_queue
from tests.e2e.operator_harness import apply, pool_manifest, unique
from tests.helpers import ROOT

pytestmark = pytest.mark.cluster


def jobpool(cluster, *argv: str, kubeconfig: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPOOL_")}
    env["KUBECONFIG"] = kubeconfig or cluster.kubeconfig
    # redis-py >= 8 warns about the queue's sync Retry object (queue/streams.py): not this test's matter
    env["PYTHONWARNINGS"] = "ignore:A synchronous redis.retry.Retry:UserWarning"
    return subprocess.run(
        [sys.executable, "-m", "jobpool.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def secret(name: str, url: str, key: str = "url") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {key: base64.b64encode(url.encode()).decode()},
    }


async def submitted_then_cleaned(url: str, namespace: str, pool: str) -> int:
    """What the pool's queue at `url` counts as submitted (the very queue of the spec); then its keys go."""
    queue = open_queue(url, namespace, pool)
    try:
        submitted = (await queue.stats()).submitted
        await queue.delete_all()
        return submitted
    finally:
        await queue.close()


def test_submit_and_status_find_the_queue_of_the_jobpool(jobpool_crds, kube_namespace, redis_server):
    inline, by_ref = unique("inline"), unique("byref")
    apply(jobpool_crds, kube_namespace, pool_manifest(inline, queue={"url": redis_server.url}))
    apply(jobpool_crds, kube_namespace, secret("queue-url", redis_server.url, key="address"))
    apply(
        jobpool_crds,
        kube_namespace,
        pool_manifest(by_ref, queue={"urlSecretRef": {"name": "queue-url", "key": "address"}}),
    )
    for pool in (inline, by_ref):
        done = jobpool(jobpool_crds, "submit", pool, "-n", kube_namespace, "--payload", "7", "--id", "seven")
        assert (done.returncode, done.stdout, done.stderr) == (0, "seven\n", "")
        done = jobpool(jobpool_crds, "status", pool, "-n", kube_namespace, "-o", "json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["waiting"] == 1
        assert asyncio.run(submitted_then_cleaned(redis_server.url, kube_namespace, pool)) == 1


def test_a_pool_without_a_queue_of_its_own_reads_the_operators_secret(
    jobpool_crds, kube_namespace, redis_server
):
    pool = unique("managed")
    apply(jobpool_crds, kube_namespace, pool_manifest(pool))
    done = jobpool(jobpool_crds, "status", pool, "-n", kube_namespace)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"jobpool status: error: pool {kube_namespace}/{pool} has no queue of its own and no "
        f"Secret {builders.producer_secret_name(pool)} (the operator makes it on a queue it "
        f"administers, --admin-queue): give --queue URL"
    ]
    # the names the operator gives its Secrets: producers submit, dlq needs the worker's user
    apply(jobpool_crds, kube_namespace, secret(builders.producer_secret_name(pool), redis_server.url))
    apply(jobpool_crds, kube_namespace, secret(builders.queue_secret_name(pool), redis_server.url))
    done = jobpool(jobpool_crds, "status", pool, "-n", kube_namespace, "-o", "yaml")
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["submitted"] == 0  # known to the cluster: no NotFound
    done = jobpool(jobpool_crds, "dlq", "list", pool, "-n", kube_namespace, "-o", "json")
    assert (done.returncode, json.loads(done.stdout or "null")) == (0, [])


def test_the_namespace_comes_from_the_context_and_a_missing_pool_is_not_found(
    jobpool_crds, kube_namespace, redis_server, tmp_path
):
    pool = unique("ctx")
    apply(jobpool_crds, kube_namespace, pool_manifest(pool, queue={"url": redis_server.url}))
    config = yaml.safe_load(Path(jobpool_crds.kubeconfig).read_text())
    for context in config["contexts"]:
        context["context"]["namespace"] = kube_namespace
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    done = jobpool(jobpool_crds, "submit", pool, "--payload", "1", kubeconfig=str(kubeconfig))
    assert done.returncode == 0, done.stderr
    done = jobpool(jobpool_crds, "status", "nosuchpool", "-n", kube_namespace)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines() == [
        f'jobpool status: error: jobpools.jobpool.dev "nosuchpool" not found in namespace "{kube_namespace}"'
    ]
    done = jobpool(jobpool_crds, "status", pool, "--context", "nosuch")
    assert done.returncode == 2 and "no context 'nosuch' in the kubeconfig" in done.stderr
