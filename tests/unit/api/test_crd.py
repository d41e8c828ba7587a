"""The committed CRD is generated from the models, and agrees with them field by field."""

import re
import types
import typing

import pydantic
import pytest
import yaml

from jobpool.api import crd
from jobpool.api.v1alpha1 import JobPoolSpec, JobPoolStatus
from tests.helpers import ROOT

CRD_FILE = ROOT / "charts/jobpool/crds/jobpool.dev_jobpools.yaml"


@pytest.fixture(scope="module")
def committed():
    return yaml.safe_load(CRD_FILE.read_text())


def test_committed_crd_is_up_to_date():
    assert CRD_FILE.read_text() == crd.render(), "charts/jobpool/crds is stale: run `make crd`"


def version(committed):
    (v,) = committed["spec"]["versions"]
    return v


def _model_of(annotation):
    """The pydantic model inside `Model | None` / `list[Model]`, or None for scalars."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if arg is not type(None) and (model := _model_of(arg)) is not None:
            return model
    return None


def _scalar_type(annotation):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _scalar_type(args[0])
    origin = typing.get_origin(annotation)
    if origin is list:
        return "array"
    if origin is dict:
        return "object"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(annotation)


def assert_agrees(model, schema, path):
    props = schema["properties"]
    fields = {f.alias: f for f in model.model_fields.values()}
    assert set(props) == set(fields), f"{path}: schema and model fields differ"
    required = {alias for alias, f in fields.items() if f.is_required()}
    assert set(schema.get("required", [])) == required, f"{path}: required fields differ"
    for alias, field in fields.items():
        sub, where = props[alias], f"{path}.{alias}"
        assert sub.get("description") == field.description, f"{where}: description differs"
        nested = _model_of(field.annotation)
        if nested is not None:
            assert_agrees(nested, sub["items"] if sub.get("type") == "array" else sub, where)
            continue
        expected_type = _scalar_type(field.annotation)
        if expected_type is not None:
            assert sub.get("type") == expected_type, f"{where}: type differs"
        if (
            path.startswith("spec")
            and not field.is_required()
            and field.default not in (None, pydantic_core_undefined())
        ):
            assert sub.get("default") == field.default, f"{where}: default differs"
        for meta in field.metadata:
            for attr, key in (("ge", "minimum"), ("le", "maximum"), ("min_length", None)):
                value = getattr(meta, attr, None)
                if value is None:
                    continue
                key = key or ("minItems" if sub.get("type") == "array" else "minLength")
                assert sub.get(key) == value, f"{where}: {key} differs"


def pydantic_core_undefined():
    from pydantic_core import PydanticUndefined

    return PydanticUndefined


def test_spec_schema_agrees_with_the_models(committed):
    schema = version(committed)["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert_agrees(JobPoolSpec, schema, "spec")


def test_status_schema_agrees_with_the_models(committed):
    schema = version(committed)["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert_agrees(JobPoolStatus, schema, "status")
    assert schema["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_every_field_has_a_description(committed):
    def walk(node, path):
        for name, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"{path}.{name} has no description"
            walk(sub, f"{path}.{name}")
            if "items" in sub:
                walk(sub["items"], f"{path}.{name}[]")

    walk(version(committed)["schema"]["openAPIV3Schema"]["properties"]["spec"], "spec")


def test_cel_rules_guard_what_the_models_refuse(committed):
    spec = version(committed)["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    rules = {
        r["rule"]: r["message"]
        for part in ("worker", "queue", "retry", "autoscaling")
        for r in spec[part]["x-kubernetes-validations"]
    }
    assert (
        rules["has(self.handler) != has(self.command)"]
        == "spec.worker: set exactly one of handler and command"
    )
    assert rules["self.minWorkers <= self.maxWorkers"] == "spec.autoscaling: minWorkers must be <= maxWorkers"
    assert spec["jobs"]["oneOf"] == [{"required": ["items"]}, {"required": ["range"]}]
    assert spec["concurrency"]["minimum"] == 1 and spec["concurrency"]["maximum"] == 1024
    # Nested objects default to their fields' defaults; optional jobs does not.
    assert spec["retry"]["default"] == {"maxAttempts": 3, "backoffSeconds": 1.0, "maxBackoffSeconds": 300.0}
    assert "default" not in spec["jobs"]


def test_the_api_server_checks_the_handler_and_queue_url_shapes(committed):
    spec = version(committed)["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    handler = re.compile(spec["worker"]["properties"]["handler"]["pattern"])
    url = re.compile(spec["queue"]["properties"]["url"]["pattern"])
    assert handler.search("pkg.mod:Class.method") and handler.search("app.tasks")  # a module of tasks
    assert not handler.search("app:") and not handler.search("a:b:c")
    assert url.search("rediss://h/0") and not url.search("http://h") and not url.search("sk-live-ABCDEF")


def test_names_subresources_and_columns(committed):
    s = committed["spec"]
    assert (s["group"], s["names"]["kind"], s["names"]["plural"], s["names"]["shortNames"], s["scope"]) == (
        "jobpool.dev",
        "JobPool",
        "jobpools",
        ["jp"],
        "Namespaced",
    )
    v = version(committed)
    assert v["name"] == "v1alpha1" and v["subresources"]["status"] == {}
    assert v["subresources"]["scale"] == {
        "specReplicasPath": ".spec.parallelism",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert [c["name"].upper() for c in v["additionalPrinterColumns"]] == [
        "DESIRED",
        "READY",
        "WAITING",
        "INFLIGHT",
        "SATURATION",
        "SUCCEEDED",
        "STATUS",
        "REASON",
        "AGE",
    ]
    # STATUS and REASON are the Ready condition's (READY is the ready worker pods)
    assert v["additionalPrinterColumns"][6]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert s["names"]["categories"] == ["all"]
    assert committed["metadata"]["labels"] == {
        "app.kubernetes.io/name": "jobpool",
        "app.kubernetes.io/part-of": "jobpool",
    }
