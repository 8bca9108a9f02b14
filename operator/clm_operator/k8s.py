"""A small Kubernetes REST client for the handlers: plain dicts in and out, errors with the HTTP status.

It reuses the official client's configuration (kubeconfig or in-cluster service account) and transport;
blocking calls run in a worker thread (``asyncio.to_thread``) so kopf's event loop never waits on them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from clm_contract import GROUP, VERSION
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

MERGE_PATCH = "application/merge-patch+json"


_REASONS = {403: "Forbidden", 404: "NotFound", 409: "Conflict", 410: "Gone", 422: "Invalid",
            429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


class KubeError(Exception):
    """A failed API call: ``status`` is the HTTP status (404 not found, 409 conflict/exists, ...)."""

    def __init__(self, status: int, reason: str, body: str, *, method: str = "", path: str = "") -> None:
        message = body
        try:
            message = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            pass
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        # clm_reconcile_errors_total{reason}: the API's own words for the common cases.
        self.metric_reason = _REASONS.get(status, f"Http{status}")


def load_configuration() -> client.Configuration:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG or ~/.kube/config)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration


def custom_path(plural: str, namespace: str, name: str | None = None, *,
                subresource: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{plural}"
    if name is not None:
        path += f"/{quote(name)}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


def path_for(api_version: str, plural: str, namespace: str, name: str | None = None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{quote(namespace)}/{plural}"
    return path if name is None else f"{path}/{quote(name)}"


class Kube:
    def __init__(self, configuration: client.Configuration | None = None) -> None:
        self._api = client.ApiClient(configuration or load_configuration())

    def request(self, method: str, path: str, *, body: Any = None, query: dict[str, str] | None = None,
                content_type: str = "application/json") -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            response = self._api.call_api(
                path, method, query_params=list((query or {}).items()), header_params=headers, body=body,
                auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                _request_timeout=30)
        except ApiException as error:
            raise KubeError(int(error.status or 0), str(error.reason), str(error.body or ""), method=method,
                            path=path) from None
        data = response.data
        return dict(json.loads(data)) if data else {}

    async def arequest(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.request, method, path, **kwargs)

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.arequest("GET", path)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    async def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        return list((await self.arequest("GET", path, query=query)).get("items") or [])

    async def create_or_get(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create ``body``; if it exists already (409), read it instead. Returns (object, created)."""
        try:
            return await self.arequest("POST", path, body=body), True
        except KubeError as error:
            if error.status != 409:
                raise
        existing = await self.get(f"{path}/{quote(body['metadata']['name'])}")
        if existing is None:
            raise KubeError(409, "Conflict", f"{body['metadata']['name']} exists but cannot be read")
        return existing, False

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.arequest("PATCH", path, body=patch, content_type=MERGE_PATCH)

    async def delete(self, path: str, propagation: str = "Background") -> bool:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            await self.arequest("DELETE", path, body=body)
            return True
        except KubeError as error:
            if error.status == 404:
                return False
            raise

    async def post_event(self, event: dict[str, Any]) -> None:
        """Create an Event; an identical one posted before (same name) is left as it is."""
        path = path_for("v1", "events", event["metadata"]["namespace"])
        try:
            await self.arequest("POST", path, body=event)
        except KubeError as error:
            if error.status != 409:
                raise
