"""The emulated Kubernetes API server: kmock's ``KubernetesEmulator`` made as strict as a real one.

kmock gives the HTTP server and its DSL of reactions; its emulator keeps objects as loose dicts (no
resourceVersion checks, no generation, no status subresource, no selectors) and its URL parser fails on
``/api/v1/namespaces``. This subclass serves every Kubernetes path itself from
:class:`~clm_operator.sandbox.store.Store`, which has a real server's write semantics, and adds discovery
with short names and categories, CRD registration and validation, server-side tables for ``kubectl get``,
pod logs, watches with resourceVersion resumption and bookmarks, and an OpenAPI v3 document with which
``kubectl apply`` delegates field validation to this server. Paths outside the Kubernetes API still go to
kmock's reactions, so a test can add its own.

Known gaps, each answered with a clear error rather than a silent difference: request bodies must be JSON
(protobuf only for the four kinds kubectl's typed ``create`` commands send, see protobuf.py); there is no
/openapi/v2 (``kubectl apply`` of a ``kind: List`` document needs ``--validate=false``; multi-document
YAML works); ``dryRun`` is refused; server-side apply is approximated by a merge patch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from typing_extensions import override

from clm_operator.sandbox import protobuf
from clm_operator.sandbox.apimachinery import (
    JSON,
    ApiError,
    bad_request,
    human_duration,
    parse_field_selector,
    parse_label_selector,
    parse_rfc3339,
)
from clm_operator.sandbox.schema import evaluate_json_path
from clm_operator.sandbox.store import ResourceDef, Store, WatchEvent

log = logging.getLogger(__name__)

SERVER_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-clm-sandbox",
    "gitCommit": "sandbox",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.24",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _json(payload: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.json_response(payload, status=status)


def _error(exc: ApiError) -> aiohttp.web.Response:
    return _json(exc.status(), status=exc.code)


def _age(obj: JSON) -> str:
    created = obj.get("metadata", {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - parse_rfc3339(created)).total_seconds())


def _event_last_seen(event: JSON) -> str:
    when = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("metadata", {}).get("creationTimestamp")
    )
    if not when:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - parse_rfc3339(str(when))).total_seconds())


def _event_object(event: JSON) -> str:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


@dataclass
class ApiRequest:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    raw: aiohttp.web.BaseRequest


@dataclass
class ApiPath:
    group: str
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath:
    """``/api/v1/namespaces/ns/pods/name/log`` and friends; ``/api/v1/namespaces/x/status`` is the
    namespace's own status, not a collection named ``status`` in it (as a real server reads it)."""
    parts = [p for p in path.split("/") if p]
    if parts[0] == "api":
        group, rest = "", parts[1:]
    else:
        if len(parts) < 2:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        group, rest = parts[1], parts[2:]
    if not rest:
        return ApiPath(group)
    version, rest = rest[0], rest[1:]
    if not rest:
        return ApiPath(group, version)
    namespace = None
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = "/".join(rest[2:]) or None
    return ApiPath(group, version, plural, namespace, name, sub)


@attrs.define(kw_only=True)
class StrictKubernetesEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with a real API server's strictness (see the module docstring)."""

    store: Store = attrs.field(factory=Store)
    bookmark_interval: float = 5.0

    @override
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        path = raw_request.path
        if not (
            path in ("/api", "/apis", "/version")
            or path.startswith(("/api/", "/apis/", "/openapi/", "/version/"))
        ):
            return await super().__call__(raw_request)  # kmock's own reactions serve everything else
        body = await raw_request.read()
        if body and "protobuf" in raw_request.headers.get("Content-Type", ""):
            # kubectl's typed commands (create namespace/secret/configmap/serviceaccount) send protobuf.
            try:
                body = json.dumps(protobuf.decode(body)).encode()
            except ApiError as exc:
                return _error(exc)
        request = ApiRequest(
            method=raw_request.method.upper(),
            path=path,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            body=body,
            raw=raw_request,
        )
        try:
            return await self._serve(request)
        except ApiError as exc:
            return _error(exc)
        except Exception as exc:  # a bug here must reach the client as a 500 Status, as a real server does
            log.exception("sandbox API server: %s %s failed", request.method, path)
            return _error(
                ApiError(
                    500,
                    "InternalError",
                    f"an error on the server ({exc!r}) has prevented the request from succeeding",
                )
            )

    async def _serve(self, request: ApiRequest) -> aiohttp.web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path == "/version":
            return _json(SERVER_VERSION)
        if path.startswith("/openapi/"):
            return self._openapi(path)
        if path == "/api":
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
                }
            )
        if path == "/apis":
            return _json(self._group_list())
        target = parse_api_path(path)
        if target.version is None:
            return _json(self._group(target.group))
        if target.plural is None:
            return _json(self._resource_list(target.group, target.version))
        return await self._serve_object_api(request, target)

    # -- discovery ---------------------------------------------------------------------------------------
    def _versions_by_group(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for rdef in self.store.resources.values():
            if rdef.group:
                versions = groups.setdefault(rdef.group, [])
                if rdef.version not in versions:
                    versions.append(rdef.version)
        return groups

    def _group_entry(self, group: str, versions: list[str]) -> JSON:
        return {
            "name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
            "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
        }

    def _group_list(self) -> JSON:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self._group_entry(g, vs) for g, vs in sorted(self._versions_by_group().items())],
        }

    def _group(self, group: str) -> JSON:
        versions = self._versions_by_group().get(group)
        if not versions:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group_entry(group, versions)}

    def _resource_list(self, group: str, version: str) -> JSON:
        rdefs = [r for r in self.store.resources.values() if r.group == group and r.version == version]
        if not rdefs:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": [entry for r in sorted(rdefs, key=lambda r: r.plural) for entry in r.discovery()],
        }

    # -- OpenAPI -----------------------------------------------------------------------------------------
    def _openapi(self, path: str) -> aiohttp.web.Response:
        """Enough OpenAPI v3 for kubectl: the root lists group-versions; each document declares every kind
        with ``x-kubernetes-group-version-kind`` and the ``fieldValidation`` parameter on PATCH, so kubectl
        delegates validation to this server (strict field validation) instead of validating client-side."""
        if path.rstrip("/") == "/openapi/v3":
            paths = {}
            for group, version in sorted({(r.group, r.version) for r in self.store.resources.values()}):
                rel = f"api/{version}" if not group else f"apis/{group}/{version}"
                digest = (
                    hashlib.sha256(json.dumps(self._openapi_doc(group, version), sort_keys=True).encode())
                    .hexdigest()[:16]
                    .upper()
                )
                paths[rel] = {"serverRelativeURL": f"/openapi/v3/{rel}?hash={digest}"}
            return _json({"paths": paths})
        if path.startswith("/openapi/v3/"):
            segments = path[len("/openapi/v3/") :].strip("/").split("/")
            if segments[0] == "api" and len(segments) == 2:
                return _json(self._openapi_doc("", segments[1]))
            if segments[0] == "apis" and len(segments) == 3:
                return _json(self._openapi_doc(segments[1], segments[2]))
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _openapi_doc(self, group: str, version: str) -> JSON:
        rdefs = [r for r in self.store.resources.values() if r.group == group and r.version == version]
        if not rdefs:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        schemas: JSON = {}
        paths: JSON = {}
        params = [
            {"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
            for n in ("dryRun", "fieldManager", "fieldValidation")
        ]
        for r in rdefs:
            schema_name = f"{group or 'core'}.{version}.{r.kind}"
            schema: JSON = (
                dict(r.schema.schema)
                if r.schema is not None
                else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            )
            schema["x-kubernetes-group-version-kind"] = [{"group": group, "version": version, "kind": r.kind}]
            schemas[schema_name] = schema
            prefix = f"/api/{version}" if not group else f"/apis/{group}/{version}"
            base = f"{prefix}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{prefix}/{r.plural}"
            gvk = {"x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": r.kind}}
            paths[f"{base}/{{name}}"] = {
                "get": {"operationId": f"read{r.kind}", **gvk},
                "put": {"operationId": f"replace{r.kind}", "parameters": params, **gvk},
                "patch": {"operationId": f"patch{r.kind}", "parameters": params, **gvk},
                "delete": {"operationId": f"delete{r.kind}", **gvk},
            }
            paths[base] = {
                "post": {"operationId": f"create{r.kind}", "parameters": params, **gvk},
                "get": {"operationId": f"list{r.kind}", **gvk},
            }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": paths,
            "components": {"schemas": schemas},
        }

    # -- objects -----------------------------------------------------------------------------------------
    async def _serve_object_api(self, request: ApiRequest, target: ApiPath) -> aiohttp.web.StreamResponse:
        assert target.version is not None and target.plural is not None
        rdef = self.store.resource(target.group, target.version, target.plural)
        namespace, name, sub = target.namespace, target.name, target.subresource
        method = request.method
        params = request.params
        strict = params.get("fieldValidation", "") == "Strict"
        if rdef.namespaced is False and namespace is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET" and params.get("watch") in ("true", "1"):
            return await self._watch(request, rdef, namespace, name)
        if name is None:
            if method == "GET":
                return self._list(request, rdef, namespace)
            if method == "POST":
                body = self._body(request)
                if params.get("dryRun"):
                    raise ApiError(400, "BadRequest", "dryRun is not supported by the sandbox")
                return _json(self.store.create(rdef, namespace, body, strict=strict), status=201)
            if method == "DELETE":
                predicate = self._predicate(params)
                items, _ = self.store.list_objects(rdef, namespace, predicate)
                for item in items:
                    with contextlib.suppress(ApiError):
                        self.store.delete(rdef, item["metadata"].get("namespace"), item["metadata"]["name"])
                return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        if sub == "log" and rdef.plural == "pods" and rdef.group == "":
            self.store.get(rdef, namespace, name)
            text = self.store.pod_logs.get((namespace or "", name), "")
            return aiohttp.web.Response(text=text, content_type="text/plain")
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub == "status" and not rdef.status_subresource:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET":
            obj = self.store.get(rdef, namespace, name)
            if self._wants_table(request):
                return _json(self._table(rdef, [obj], str(self.store.revision), request))
            return _json(obj)
        if method == "PUT":
            return _json(
                self.store.replace(rdef, namespace, name, self._body(request), subresource=sub, strict=strict)
            )
        if method == "PATCH":
            content_type = request.headers.get("Content-Type", "application/merge-patch+json")
            patch = self._body(request, yaml_ok=content_type.startswith("application/apply-patch"))
            if content_type.startswith("application/apply-patch"):
                # Server-side apply, approximated as a merge patch that creates the object when missing.
                try:
                    self.store.get(rdef, namespace, name)
                except ApiError as exc:
                    if exc.code != 404:
                        raise
                    return _json(self.store.create(rdef, namespace, patch, strict=strict), status=201)
            return _json(
                self.store.patch(rdef, namespace, name, content_type, patch, subresource=sub, strict=strict)
            )
        if method == "DELETE":
            options = self._body(request, optional=True) or {}
            return _json(
                self.store.delete(rdef, namespace, name, options, propagation=params.get("propagationPolicy"))
            )
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed")

    @staticmethod
    def _body(request: ApiRequest, optional: bool = False, yaml_ok: bool = False) -> Any:
        if not request.body:
            if optional:
                return None
            raise bad_request("the request body is empty")
        try:
            return json.loads(request.body)
        except ValueError:
            if yaml_ok:
                return yaml.safe_load(request.body)
            raise bad_request(
                f"the request body is not valid JSON (Content-Type {request.headers.get('Content-Type')!r})"
            ) from None

    @staticmethod
    def _predicate(params: Any) -> Any:
        labels = parse_label_selector(params.get("labelSelector"))
        fields = parse_field_selector(params.get("fieldSelector"))
        return lambda obj: labels(obj.get("metadata", {}).get("labels") or {}) and fields(obj)

    @staticmethod
    def _wants_table(request: ApiRequest) -> bool:
        return "as=Table" in request.headers.get("Accept", "")

    def _list(self, request: ApiRequest, rdef: ResourceDef, namespace: str | None) -> aiohttp.web.Response:
        items, revision = self.store.list_objects(rdef, namespace, self._predicate(request.params))
        if self._wants_table(request):
            return _json(self._table(rdef, items, str(revision), request))
        return _json(
            {
                "kind": rdef.list_kind,
                "apiVersion": rdef.api_version,
                "metadata": {"resourceVersion": str(revision)},
                "items": items,
            }
        )

    # -- server-side tables --------------------------------------------------------------------------------
    def _table(self, rdef: ResourceDef, items: list[JSON], revision: str, request: ApiRequest) -> JSON:
        columns: list[JSON] = [
            {
                "name": "Name",
                "type": "string",
                "format": "name",
                "priority": 0,
                "description": "Name must be unique within a namespace.",
            }
        ]
        cells: list[list[Any]] = [[obj["metadata"]["name"]] for obj in items]
        if rdef.builtin:
            extra: list[tuple[str, Any]] = []
            if rdef.plural == "pods":
                extra = [("Status", lambda o: o.get("status", {}).get("phase", ""))]
            elif rdef.plural == "jobs":
                extra = [
                    ("Status", self._job_status),
                    (
                        "Completions",
                        lambda o: (
                            f"{o.get('status', {}).get('succeeded', 0)}/"
                            f"{o.get('spec', {}).get('completions', 1)}"
                        ),
                    ),
                ]
            elif rdef.plural == "namespaces":
                extra = [("Status", lambda o: o.get("status", {}).get("phase", ""))]
            elif rdef.plural == "events":
                extra = [
                    ("Last Seen", _event_last_seen),
                    ("Type", lambda o: o.get("type", "")),
                    ("Reason", lambda o: o.get("reason", "")),
                    ("Object", _event_object),
                    ("Message", lambda o: o.get("message", o.get("note", ""))),
                ]
            for title, fn in extra:
                columns.append(
                    {"name": title, "type": "string", "format": "", "priority": 0, "description": ""}
                )
                for row, obj in zip(cells, items, strict=True):
                    row.append(fn(obj))
            if rdef.plural != "events":  # an event's age is its Last Seen
                columns.append(
                    {"name": "Age", "type": "date", "format": "", "priority": 0, "description": ""}
                )
                for row, obj in zip(cells, items, strict=True):
                    row.append(_age(obj))
        else:
            printer = rdef.printer_columns or [
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
            ]
            for column in printer:
                columns.append(
                    {
                        "name": column["name"],
                        "type": column.get("type", "string"),
                        "format": column.get("format", ""),
                        "priority": int(column.get("priority", 0)),
                        "description": column.get("description", ""),
                    }
                )
                for row, obj in zip(cells, items, strict=True):
                    value = evaluate_json_path(obj, column["jsonPath"])
                    if column.get("type") == "date" and isinstance(value, str):
                        try:
                            value = human_duration((datetime.now(UTC) - parse_rfc3339(value)).total_seconds())
                        except ValueError:
                            pass
                    row.append(value)
        full = request.params.get("includeObject") == "Object"
        rows = [
            {
                "cells": row,
                "object": obj
                if full
                else {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            }
            for row, obj in zip(cells, items, strict=True)
        ]
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": revision},
            "columnDefinitions": columns,
            "rows": rows,
        }

    @staticmethod
    def _job_status(job: JSON) -> str:
        for condition in job.get("status", {}).get("conditions") or []:
            if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
                return str(condition["type"])
        if job.get("spec", {}).get("suspend"):
            return "Suspended"
        return "Running" if job.get("status", {}).get("active") else "Pending"

    # -- watches -------------------------------------------------------------------------------------------
    async def _watch(
        self, request: ApiRequest, rdef: ResourceDef, namespace: str | None, name: str | None
    ) -> aiohttp.web.StreamResponse:
        params = request.params
        predicate = self._predicate(params)

        def wanted(event_obj: JSON) -> bool:
            meta = event_obj.get("metadata", {})
            if namespace is not None and meta.get("namespace") != namespace:
                return False
            if name is not None and meta.get("name") != name:
                return False
            return bool(predicate(event_obj))

        since_text = params.get("resourceVersion", "")
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
        send_initial = params.get("sendInitialEvents") in ("true", "1")
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        # Subscribe before reading the state, so that nothing that happens in between is missed.
        queue = self.store.subscribe()
        try:
            initial: list[JSON] = []
            if since_text in ("", "0") or send_initial:
                items, last_rv = self.store.list_objects(rdef, namespace, wanted)
                initial = [{"type": "ADDED", "object": obj} for obj in items]
            else:
                try:
                    last_rv = int(since_text)
                except ValueError:
                    raise bad_request(f"invalid resourceVersion {since_text!r}") from None
                try:
                    replay = self.store.events_since(rdef.group, rdef.plural, last_rv)
                except ApiError as exc:
                    initial = [{"type": "ERROR", "object": exc.status()}]
                    replay = []
                for past in replay:
                    if wanted(past.object):
                        initial.append({"type": past.type, "object": past.object})
                last_rv = max([last_rv, *[e.resource_version for e in replay]])
            raw = request.raw
            assert raw is not None
            response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(raw)
            for item in initial:
                await response.write(json.dumps(item).encode() + b"\n")
            if send_initial and bookmarks:
                await response.write(
                    json.dumps(self._bookmark(rdef, last_rv, initial_end=True)).encode() + b"\n"
                )
            if initial and initial[-1]["type"] == "ERROR":
                await response.write_eof()
                return response
            deadline = time.monotonic() + timeout if timeout else None
            next_bookmark = time.monotonic() + self.bookmark_interval
            while True:
                now = time.monotonic()
                wait = next_bookmark - now
                if deadline is not None:
                    wait = min(wait, deadline - now)
                    if wait <= 0:
                        break
                try:
                    event: WatchEvent = await asyncio.wait_for(queue.get(), timeout=max(wait, 0.01))
                except TimeoutError:
                    transport = request.raw.transport
                    if transport is None or transport.is_closing():
                        break  # the client went away: stop collecting events for nobody
                    if bookmarks and time.monotonic() >= next_bookmark:
                        await response.write(
                            json.dumps(self._bookmark(rdef, self.store.revision)).encode() + b"\n"
                        )
                    if time.monotonic() >= next_bookmark:
                        next_bookmark = time.monotonic() + self.bookmark_interval
                    continue
                if (
                    event.group != rdef.group
                    or event.plural != rdef.plural
                    or event.resource_version <= last_rv
                ):
                    continue
                last_rv = event.resource_version
                if wanted(event.object):
                    obj = dict(event.object)
                    obj["apiVersion"] = rdef.api_version
                    await response.write(json.dumps({"type": event.type, "object": obj}).encode() + b"\n")
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
            return response
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        finally:
            self.store.unsubscribe(queue)

    @staticmethod
    def _bookmark(rdef: ResourceDef, revision: int, initial_end: bool = False) -> JSON:
        meta: JSON = {"resourceVersion": str(revision)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {
            "type": "BOOKMARK",
            "object": {"kind": rdef.kind, "apiVersion": rdef.api_version, "metadata": meta},
        }


async def serve(
    emulator: StrictKubernetesEmulator, host: str = "127.0.0.1", port: int | None = None
) -> kmock.Server:
    """Start serving the emulator on host:port (a free port when None); returns kmock's entered Server."""
    server = kmock.Server(emulator, host=host, port=port)
    await emulator.__aenter__()
    await server.__aenter__()
    return server
