"""A small async Kubernetes API client for the operator's writes.

kopf owns the watches; this client does the few writes the reconcile loop needs
(server-side apply, merge patches, deletes, Secret and Lease reads) over one aiohttp
session, with credentials taken from the kubeconfig or the in-cluster service account.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import aiohttp
from kubernetes import client as k8s_client, config as k8s_config

from ..contract import OPERATOR_NAME
from . import kinds

_KINDS = {(kind.api_version, kind.kind): kind for kind in kinds.ALL}


# KubeError.status when the API server gave no usable reply (connection lost, garbled body).
NO_RESPONSE = 0


class KubeError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status


# What a call to the API server can fail with that a later attempt may not.
API_FAILURES = (KubeError, OSError, asyncio.TimeoutError, aiohttp.ClientError)


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    return _KINDS[(api_version, kind)].path(namespace, name)


class KubeApi:
    def __init__(self, configuration: k8s_client.Configuration):
        self.configuration = configuration  # loaded once; kopf's login reads it too
        self._host = configuration.host.rstrip("/")
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        self._ssl = context
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_environment(cls) -> KubeApi:
        """In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config."""
        configuration = k8s_client.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(client_configuration=configuration)
        return cls(configuration)

    def _headers(self, content_type: str) -> dict[str, str]:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        # The refresh hook (in-cluster token rotation) runs inside get_api_key_with_prefix.
        token = self.configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["Authorization"] = token
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """One API call; None for 404 on reads and deletes, KubeError for other failures."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32),
                timeout=aiohttp.ClientTimeout(total=30),
            )
        data = None if body is None else json.dumps(body)
        try:
            async with self._session.request(
                method, self._host + path, data=data, params=params, headers=self._headers(content_type)
            ) as response:
                text = await response.text()
                if response.status == 404 and method in ("GET", "DELETE"):
                    return None
                if response.status >= 400:
                    try:
                        message = json.loads(text).get("message", text)
                    except ValueError:
                        message = text
                    raise KubeError(response.status, message)
                return json.loads(text) if text else None
        except aiohttp.ClientError as exc:  # e.g. ServerDisconnectedError, which is no OSError
            raise KubeError(NO_RESPONSE, f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        except ValueError as exc:  # a reply that is not JSON
            raise KubeError(NO_RESPONSE, f"{method} {path}: unreadable reply: {exc}") from exc

    async def get(self, kind: kinds.Kind, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.request("GET", kind.path(namespace, name))

    async def list(self, kind: kinds.Kind, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        reply = await self.request("GET", kind.path(namespace), params={"labelSelector": label_selector})
        return list((reply or {}).get("items") or [])

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Server-side apply as the operator's field manager, taking managed fields back."""
        meta = obj["metadata"]
        return await self.request(
            "PATCH",
            object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]),
            body=obj,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": OPERATOR_NAME, "force": "true"},
        )

    async def merge_patch(
        self,
        kind: kinds.Kind,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        *,
        subresource: str = "",
    ) -> dict[str, Any] | None:
        path = kind.path(namespace, name) + (f"/{subresource}" if subresource else "")
        return await self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    async def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        meta = obj["metadata"]
        return await self.request(
            "POST", object_path(obj["apiVersion"], obj["kind"], meta["namespace"]), body=obj
        )

    async def replace(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        meta = obj["metadata"]
        return await self.request(
            "PUT", object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]), body=obj
        )

    async def delete(self, kind: kinds.Kind, namespace: str, name: str) -> None:
        await self.request("DELETE", kind.path(namespace, name))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
