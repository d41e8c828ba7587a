"""`jobpool operator ensure-serving-cert`: the chart's pre-install/pre-upgrade hook that keeps the
external metrics API's certificate in a Secret across upgrades.

A certificate made while rendering (`genCA`) was new at every `helm upgrade` and `helm template`:
the APIService's caBundle and the operator's certificate changed under running HPAs, and GitOps
tools saw a diff forever. This hook makes a CA and a serving certificate once, into the Secret
`<operator>-external-metrics-tls` (keys tls.crt, tls.key, ca.crt), and makes them again only when
the names change or the certificate nears its end. The operator serves that certificate (and
loads it again when the mounted Secret changes) and puts ca.crt into the APIService.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import sys
from typing import Any

from . import kinds
from .kube import KubeApi, KubeError

VALID_DAYS = 825  # what clients accept for a serving certificate; renewed 30 days before
RENEW_BEFORE = dt.timedelta(days=30)
KEEP = {"helm.sh/resource-policy": "keep"}
CA_DAYS = 3650


def renewal_reason(secret: dict[str, Any] | None, dns_names: list[str], now: dt.datetime) -> str | None:
    """Pure (given the PEM): why a new certificate is needed, or None to keep the Secret's."""
    from cryptography import x509

    if secret is None:
        return "no certificate yet"
    data = secret.get("data") or {}
    if not all(data.get(key) for key in ("tls.crt", "tls.key", "ca.crt")):
        return "the Secret lacks tls.crt, tls.key or ca.crt"
    try:
        cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return "the certificate cannot be read"
    if sorted(names.get_values_for_type(x509.DNSName)) != sorted(dns_names):
        return "the Service's names changed"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return f"the certificate ends on {cert.not_valid_after_utc:%Y-%m-%d}"
    return None


def make_certificate(dns_names: list[str], now: dt.datetime) -> dict[str, bytes]:
    """A new CA and a serving certificate for `dns_names` signed by it (EC P-256), as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("jobpool-external-metrics-ca"))
        .issuer_name(name("jobpool-external-metrics-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    # the names are in the SANs; a common name holds at most 64 characters
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("jobpool-external-metrics"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "tls.crt": cert.public_bytes(pem),
        "ca.crt": ca.public_bytes(pem),
        "tls.key": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    }


def secret_object(
    name: str, namespace: str, labels: dict[str, str], pems: dict[str, bytes]
) -> dict[str, Any]:
    return {
        "apiVersion": kinds.SECRET.api_version,
        "kind": kinds.SECRET.kind,
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": dict(KEEP)},
        "data": {key: base64.b64encode(value).decode() for key, value in pems.items()},
    }


async def ensure(
    kube: KubeApi, name: str, namespace: str, dns_names: list[str], labels: dict[str, str]
) -> str:
    now = dt.datetime.now(dt.UTC)
    existing = await kube.get(kinds.SECRET, namespace, name)
    reason = renewal_reason(existing, dns_names, now)
    # an older chart rendered this Secret itself: marked, Helm's upgrade does not delete it
    unmarked = existing is not None and (
        (existing["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") != "keep"
    )
    if reason is None:
        if unmarked:
            await kube.merge_patch(kinds.SECRET, namespace, name, {"metadata": {"annotations": dict(KEEP)}})
        return f"Secret {namespace}/{name} keeps its certificate"
    secret = secret_object(name, namespace, labels, make_certificate(dns_names, now))
    if existing is None:
        await kube.create(secret)
    else:
        await kube.merge_patch(
            kinds.SECRET, namespace, name, {"metadata": {"annotations": dict(KEEP)}, "data": secret["data"]}
        )
    return f"made a new certificate in Secret {namespace}/{name} ({reason})"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jobpool operator ensure-serving-cert",
        description="Keep the external metrics API's certificate in a Secret.",
    )
    parser.add_argument("--name", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--dns-name", action="append", required=True)
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    kube = KubeApi.from_environment()
    try:
        labels = dict(label.split("=", 1) for label in args.label)
        print(
            f"jobpool operator ensure-serving-cert: "
            f"{await ensure(kube, args.name, args.namespace, args.dns_name, labels)}"
        )
        return 0
    except KubeError as exc:
        print(
            f"jobpool operator ensure-serving-cert: error: Secret {args.namespace}/{args.name}: {exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        await kube.close()


def main(argv: list[str]) -> int:
    return asyncio.run(run(parse_args(argv)))
