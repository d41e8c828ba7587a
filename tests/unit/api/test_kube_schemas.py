"""The committed Kubernetes type schemas of spec.worker.podTemplate: generated from the pinned Kubernetes
OpenAPI spec, restricted to what the restricted Pod Security Standard allows."""

import json
import subprocess

import pytest

from jobpool.api import kube_schemas


def test_committed_schemas_are_generated_from_the_pinned_kubernetes_openapi():
    try:
        path = kube_schemas.openapi_path()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the pinned k8s.io/kubernetes module is not downloaded (`make tools`): {exc}")
    assert kube_schemas.SCHEMAS_FILE.read_text() == kube_schemas.render(json.loads(path.read_text())), (
        "operator/jobpool/api/kubernetes-schemas.json is stale: run "
        "`python operator/jobpool/api/kube_schemas.py > operator/jobpool/api/kubernetes-schemas.json`"
    )


def test_what_the_restricted_profile_forbids_has_no_field():
    container = kube_schemas.schema("Container")["properties"]
    security = container["securityContext"]["properties"]
    assert not {"privileged", "procMount", "seLinuxOptions", "windowsOptions"} & set(security)
    assert security["allowPrivilegeEscalation"]["enum"] == [False] and security["runAsNonRoot"]["enum"] == [
        True
    ]
    assert security["capabilities"]["properties"]["add"]["items"]["enum"] == ["NET_BIND_SERVICE"]
    assert security["seccompProfile"]["properties"]["type"]["enum"] == ["RuntimeDefault", "Localhost"]
    assert set(container["ports"]["items"]["properties"]) == {"containerPort", "name", "protocol"}
    volume = kube_schemas.schema("Volume")["properties"]
    assert set(volume) == {
        "name",
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
    pod = kube_schemas.schema("PodSecurityContext")["properties"]
    assert "sysctls" not in pod and pod["runAsUser"]["minimum"] == 1


def test_every_field_has_a_description_for_kubectl_explain():
    def undocumented(node, path):
        for name, sub in (node.get("properties") or {}).items():
            if not sub.get("description"):
                yield f"{path}.{name}"
            yield from undocumented(sub.get("items", sub), f"{path}.{name}")

    missing = [p for name in kube_schemas.ROOTS for p in undocumented(kube_schemas.schema(name), name)]
    assert not missing, missing[:10]


def test_the_crd_adds_no_default_inside_a_kubernetes_type():
    """A default {} on a volume source or an affinity term would make every pool's pods invalid."""
    from jobpool.api import crd

    template = crd.spec_schema()["properties"]["worker"]["properties"]["podTemplate"]["properties"]["spec"]

    def defaults(node, path):
        if isinstance(node, dict):
            if "default" in node:
                yield path
            for key, sub in node.items():
                yield from defaults(sub, f"{path}.{key}")
        elif isinstance(node, list):
            for sub in node:
                yield from defaults(sub, path)

    found = [
        p
        for p in defaults(template["properties"], "spec")
        if not p.endswith(".ports.items.properties.protocol")
    ]
    assert found == [], found[:5]
