"""The operator's check of the installed CRD: a schema older than the operator's is named."""

from __future__ import annotations

import copy

from jobpool.controller.crd_check import field_paths, missing_fields, problem, wanted_schema


def test_the_schema_the_operator_ships_is_complete_against_itself():
    assert problem(wanted_schema(), wanted_schema()) is None
    assert {"spec.worker.image", "spec.autoscaling.maxWorkers", "status.conditions[].reason"} <= field_paths(
        wanted_schema()
    )


def test_an_installed_crd_without_a_field_is_older_and_named():
    older = copy.deepcopy(wanted_schema())
    del older["properties"]["spec"]["properties"]["drainSeconds"]
    del older["properties"]["status"]["properties"]["saturation"]
    assert missing_fields(older, wanted_schema()) == ["spec.drainSeconds", "status.saturation"]
    message = problem(older, wanted_schema())
    assert message.startswith(
        "the installed CRD jobpools.jobpool.dev is older than this operator "
        "(it lacks spec.drainSeconds, status.saturation); apply the CRD of "
        "this version first: kubectl apply --server-side -f charts/jobpool/crds/"
    )


def test_a_newer_installed_crd_is_fine_and_a_missing_one_is_named():
    newer = copy.deepcopy(wanted_schema())
    newer["properties"]["spec"]["properties"]["somethingNew"] = {"type": "string"}
    assert problem(newer, wanted_schema()) is None
    assert "the CRD is not installed" in problem(None, wanted_schema())
