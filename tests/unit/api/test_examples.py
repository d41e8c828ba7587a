"""Every example manifest is a valid JobPool (the same models the CRD is built from)."""

import pytest
import yaml

from jobpool.api import JobPool
from tests.helpers import ROOT

EXAMPLES = ROOT / "examples"
MANIFESTS = sorted(EXAMPLES.glob("*/jobpool.yaml"))


def test_examples_are_numbered_and_present():
    assert [m.parent.name[:3] for m in MANIFESTS] == [f"{i:02d}-" for i in range(1, len(MANIFESTS) + 1)]
    assert len(MANIFESTS) >= 4


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.parent.name)
def test_example_is_a_valid_jobpool(manifest):
    pools = [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc and doc["kind"] == "JobPool"]
    assert pools, f"{manifest} has no JobPool"
    for doc in pools:
        pool = JobPool.model_validate(doc)
        assert pool.api_version == "jobpool.dev/v1alpha1" and pool.metadata["name"]
