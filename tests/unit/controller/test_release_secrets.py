"""The hook that makes the bundled Redis's password once: create, keep, follow the address."""

from __future__ import annotations

import base64

from jobpool.controller.release_secrets import desired


def data(**values: str) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}


def test_a_missing_secret_is_created_with_a_new_password_and_kept_on_uninstall():
    verb, secret = desired(
        None, "jp-redis", "ops", "jp-redis.ops.svc:6379/0", {"a": "b"}, make_password=lambda: "s3cret"
    )
    assert verb == "create"
    assert secret["data"] == data(password="s3cret", url="redis://:s3cret@jp-redis.ops.svc:6379/0")
    assert secret["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_an_existing_password_is_kept_and_only_its_url_follows_the_address():
    existing = {
        "metadata": {"annotations": {"helm.sh/resource-policy": "keep"}},
        "data": data(password="old", url="redis://:old@jp-redis.ops.svc:6379/0"),
    }
    assert desired(existing, "jp-redis", "ops", "jp-redis.ops.svc:6379/0", {}) is None
    verb, patch = desired(existing, "jp-redis", "ops", "jp-redis.ops.svc:6380/0", {})
    assert (verb, patch) == ("patch", {"data": data(url="redis://:old@jp-redis.ops.svc:6380/0")})


def test_the_secret_of_an_older_chart_is_marked_so_helm_upgrade_does_not_delete_it():
    existing = {
        "metadata": {"annotations": {"meta.helm.sh/release-name": "jp"}},
        "data": data(password="old", url="redis://:old@jp-redis.ops.svc:6379/0"),
    }
    assert desired(existing, "jp-redis", "ops", "jp-redis.ops.svc:6379/0", {}) == (
        "patch",
        {"metadata": {"annotations": {"helm.sh/resource-policy": "keep"}}},
    )
