"""A small JSON client for the node agent on top of the ``kubernetes`` package's ApiClient.

Plain dicts in and out (the typed models lose fields the agent must round-trip and mis-deserialize the
binding subresource's answer); thread-safe for the agent's threads (urllib3's pool).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

JSON = dict[str, Any]
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


class Kube:
    def __init__(self, kubeconfig: Path, server: str | None = None) -> None:
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        if server:
            configuration.host = server
        configuration.connection_pool_maxsize = 64
        self.api = client.ApiClient(configuration)
        self.host = str(configuration.host)
        self.ca_file: str | None = configuration.ssl_ca_cert

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> JSON:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        response = self.api.call_api(
            path,
            method,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=False,
            _request_timeout=timeout,
        )
        data = response.data
        return json.loads(data) if data else {}

    def get(self, path: str, **query: Any) -> JSON:
        return self.request("GET", path, query=query)

    def create(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: JSON, content_type: str = STRATEGIC) -> JSON:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def replace(self, path: str, body: JSON) -> JSON:
        return self.request("PUT", path, body=body)

    def delete(self, path: str, body: JSON | None = None) -> JSON:
        return self.request("DELETE", path, body=body)

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 60) -> Iterator[JSON]:
        """The events of one watch request, until the server ends it (``timeout_seconds``)."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        response = self.api.call_api(
            path,
            "GET",
            query_params=list(query.items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=False,
            _request_timeout=(10, timeout_seconds + 15),
        )
        try:
            for line in iter_resp_lines(response):
                if line.strip():
                    yield json.loads(line)
        finally:
            response.release_conn()


def status_code(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, ApiException) else None
