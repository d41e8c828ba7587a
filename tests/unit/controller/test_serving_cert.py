"""The external metrics certificate: made once, kept while right, renewed near its end; the
leader's EndpointSlice."""

import base64
import datetime as dt

from jobpool.controller.external_metrics import endpoint_slice
from jobpool.controller.serving_cert import VALID_DAYS, make_certificate, renewal_reason, secret_object

# as long as a long namespace makes them: a common name could not hold them (64 characters)
NAMES = [
    "jp-operator-external-metrics.a-namespace-named-at-length-by-a-test-run.svc",
    "jp-operator-external-metrics.a-namespace-named-at-length-by-a-test-run",
]
NOW = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)


def test_a_certificate_is_kept_until_its_names_change_or_it_nears_its_end():
    secret = secret_object("tls", "ops", {}, make_certificate(NAMES, NOW))
    assert renewal_reason(None, NAMES, NOW) == "no certificate yet"
    assert renewal_reason(secret, NAMES, NOW) is None
    assert renewal_reason(secret, list(reversed(NAMES)), NOW + dt.timedelta(days=400)) is None
    assert renewal_reason(secret, ["other.ops.svc"], NOW) == "the Service's names changed"
    late = NOW + dt.timedelta(days=VALID_DAYS - 10)
    assert renewal_reason(secret, NAMES, late).startswith("the certificate ends on")
    broken = {"data": {**secret["data"], "tls.crt": base64.b64encode(b"nope").decode()}}
    assert renewal_reason(broken, NAMES, NOW) == "the certificate cannot be read"
    assert (
        renewal_reason({"data": {"tls.crt": "x"}}, NAMES, NOW)
        == "the Secret lacks tls.crt, tls.key or ca.crt"
    )


def test_the_service_routes_only_to_the_leaders_pod():
    slice_ = endpoint_slice("jp-operator-external-metrics", "ops", "jp-operator-abc", "10.0.0.7", 6443)
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "jp-operator-external-metrics"
    assert slice_["endpoints"] == [
        {
            "addresses": ["10.0.0.7"],
            "conditions": {"ready": True},
            "targetRef": {"kind": "Pod", "namespace": "ops", "name": "jp-operator-abc"},
        }
    ]
    assert slice_["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]
    assert endpoint_slice("s", "ops", "p", "fd00::7", 1)["addressType"] == "IPv6"
