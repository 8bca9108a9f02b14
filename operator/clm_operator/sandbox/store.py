"""The object store of the emulated API server, with a real server's write semantics.

Everything here is synchronous and runs on the sandbox's event loop, so each operation is atomic (as an
etcd transaction is): the HTTP layer (emulator.py) and the in-process Job executor both call it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import re
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from clm_operator.sandbox.apimachinery import (
    JSON,
    ApiError,
    already_exists,
    apply_patch,
    bad_request,
    conflict,
    invalid,
    not_found,
    rfc3339,
    selector_from_match_labels,
)
from clm_operator.sandbox.schema import CustomResourceSchema

log = logging.getLogger(__name__)

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_WATCH_HISTORY = 20000  # events kept for watch resumption; older resourceVersions answer 410 Gone
_CRUD_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass
class ResourceDef:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool = True
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    status_subresource: bool = False
    builtin: bool = True
    schema: CustomResourceSchema | None = None
    printer_columns: list[JSON] = field(default_factory=list)
    extra_subresources: list[str] = field(default_factory=list)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def discovery(self) -> list[JSON]:
        entries: list[JSON] = [
            {
                "name": self.plural,
                "singularName": self.singular,
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": list(_CRUD_VERBS),
                **({"shortNames": self.short_names} if self.short_names else {}),
                **({"categories": self.categories} if self.categories else {}),
            }
        ]
        if self.status_subresource:
            entries.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        for sub in self.extra_subresources:
            entries.append(
                {
                    "name": f"{self.plural}/{sub}",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind if sub != "log" else "Pod",
                    "verbs": ["get"],
                }
            )
        return entries


BUILTINS: list[ResourceDef] = [
    ResourceDef(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        namespaced=False,
        short_names=["ns"],
        status_subresource=True,
    ),
    ResourceDef("", "v1", "secrets", "secret", "Secret"),
    ResourceDef("", "v1", "configmaps", "configmap", "ConfigMap", short_names=["cm"]),
    ResourceDef("", "v1", "events", "event", "Event", short_names=["ev"]),
    ResourceDef(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        short_names=["po"],
        categories=["all"],
        status_subresource=True,
        extra_subresources=["log"],
    ),
    ResourceDef("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", short_names=["sa"]),
    ResourceDef("events.k8s.io", "v1", "events", "event", "Event", short_names=["ev"]),
    ResourceDef("batch", "v1", "jobs", "job", "Job", categories=["all"], status_subresource=True),
    ResourceDef("coordination.k8s.io", "v1", "leases", "lease", "Lease"),
    ResourceDef(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        namespaced=False,
        short_names=["crd", "crds"],
        categories=["api-extensions"],
        status_subresource=True,
    ),
]

Key = tuple[str, str, str, str]  # group, plural, namespace ("" when cluster-scoped), name


@dataclass
class WatchEvent:
    resource_version: int
    group: str
    plural: str
    type: str
    object: JSON


def _spec_part(obj: JSON) -> JSON:
    """Everything a generation counts: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _without_rv(obj: JSON) -> JSON:
    clone = copy.deepcopy(obj)
    clone.get("metadata", {}).pop("resourceVersion", None)
    clone.get("metadata", {}).pop("managedFields", None)
    return clone


class Store:
    def __init__(self) -> None:
        self.resources: dict[tuple[str, str, str], ResourceDef] = {}
        self.objects: dict[Key, JSON] = {}
        self.revision = 1
        self.history: deque[WatchEvent] = deque(maxlen=_WATCH_HISTORY)
        self.subscribers: set[asyncio.Queue[WatchEvent]] = set()
        self.pod_logs: dict[tuple[str, str], str] = {}
        self.hooks: list[Callable[[WatchEvent], None]] = []
        for rdef in BUILTINS:
            self.register(rdef)
        for ns in ("default", "kube-system", "kube-public"):
            self.create(self.resource("", "v1", "namespaces"), None, {"metadata": {"name": ns}})

    # -- resources -------------------------------------------------------------------------------------
    def register(self, rdef: ResourceDef) -> None:
        self.resources[(rdef.group, rdef.version, rdef.plural)] = rdef

    def resource(self, group: str, version: str, plural: str) -> ResourceDef:
        rdef = self.resources.get((group, version, plural))
        if rdef is None:
            raise ApiError(
                404,
                "NotFound",
                "the server could not find the requested resource",
                {"group": group, "kind": plural},
            )
        return rdef

    def find_kind(self, api_version: str, kind: str) -> ResourceDef | None:
        for rdef in self.resources.values():
            if rdef.api_version == api_version and rdef.kind == kind:
                return rdef
        return None

    # -- reads -----------------------------------------------------------------------------------------
    def _key(self, rdef: ResourceDef, namespace: str | None, name: str) -> Key:
        return (rdef.group, rdef.plural, (namespace or "") if rdef.namespaced else "", name)

    def _present(self, rdef: ResourceDef, obj: JSON) -> JSON:
        shown = copy.deepcopy(obj)
        shown["apiVersion"] = rdef.api_version
        shown["kind"] = rdef.kind
        return shown

    def get(self, rdef: ResourceDef, namespace: str | None, name: str) -> JSON:
        obj = self.objects.get(self._key(rdef, namespace, name))
        if obj is None:
            raise not_found(rdef.plural, rdef.group, name)
        return self._present(rdef, obj)

    def list_objects(
        self, rdef: ResourceDef, namespace: str | None, predicate: Callable[[JSON], bool] = lambda o: True
    ) -> tuple[list[JSON], int]:
        items = [
            self._present(rdef, obj)
            for (g, p, ns, _), obj in sorted(self.objects.items())
            if g == rdef.group and p == rdef.plural and (namespace is None or ns == namespace)
        ]
        return [o for o in items if predicate(o)], self.revision

    def objects_of(self, group: str, plural: str) -> Iterable[JSON]:
        return [o for (g, p, _, _), o in self.objects.items() if g == group and p == plural]

    # -- watch -----------------------------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[WatchEvent]:
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[WatchEvent]) -> None:
        self.subscribers.discard(queue)

    def events_since(self, group: str, plural: str, since: int) -> list[WatchEvent]:
        if (
            self.history
            and since < self.history[0].resource_version - 1
            and len(self.history) == _WATCH_HISTORY
        ):
            raise ApiError(
                410, "Expired", f"too old resource version: {since} ({self.history[0].resource_version})"
            )
        return [
            e for e in self.history if e.resource_version > since and e.group == group and e.plural == plural
        ]

    def _emit(self, rdef: ResourceDef, kind: str, obj: JSON) -> None:
        event = WatchEvent(
            int(obj["metadata"]["resourceVersion"]), rdef.group, rdef.plural, kind, self._present(rdef, obj)
        )
        self.history.append(event)
        for queue in self.subscribers:
            queue.put_nowait(event)
        for hook in self.hooks:
            hook(event)

    def _next_rv(self) -> str:
        self.revision += 1
        return str(self.revision)

    # -- writes ----------------------------------------------------------------------------------------
    def _check_namespace(self, rdef: ResourceDef, namespace: str | None, creating: bool) -> None:
        if not rdef.namespaced:
            return
        if not namespace:
            raise bad_request("the server could not find the requested resource: a namespace is required")
        ns = self.objects.get(("", "namespaces", "", namespace))
        if ns is None:
            raise not_found("namespaces", "", namespace)
        if creating and ns["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f'{rdef.plural} "..." is forbidden: unable to create new content in '
                f"namespace {namespace} because it is being terminated",
            )

    def _validate_custom(self, rdef: ResourceDef, obj: JSON, old: JSON | None, strict: bool) -> JSON:
        if rdef.schema is None:
            return obj
        name = obj.get("metadata", {}).get("name", "")
        defaulted = rdef.schema.default(obj)
        pruned, dropped = rdef.schema.prune(defaulted)
        if dropped and strict:
            raise ApiError(
                400,
                "BadRequest",
                "strict decoding error: " + ", ".join(f'unknown field "{path}"' for path in dropped),
            )
        causes = rdef.schema.validate(pruned)
        if old is not None:
            causes += rdef.schema.immutability_errors(old, pruned)
        if causes:
            raise invalid(rdef.kind, rdef.group, name, causes)
        return pruned

    def create(self, rdef: ResourceDef, namespace: str | None, body: JSON, *, strict: bool = False) -> JSON:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5)
            )
        name = meta.get("name")
        if not name:
            raise invalid(
                rdef.kind,
                rdef.group,
                "",
                [("FieldValueRequired", "metadata.name", "Required value: name or generateName is required")],
            )
        if not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
            raise invalid(
                rdef.kind,
                rdef.group,
                name,
                [
                    (
                        "FieldValueInvalid",
                        "metadata.name",
                        f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                        "character",
                    )
                ],
            )
        if rdef.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            namespace = namespace or body_ns
            self._check_namespace(rdef, namespace, creating=True)
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        key = self._key(rdef, namespace, name)
        if key in self.objects:
            raise already_exists(rdef.plural, rdef.group, name)
        for server_owned in (
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
            "selfLink",
        ):
            meta.pop(server_owned, None)
        if rdef.status_subresource:
            obj.pop("status", None)
        obj["apiVersion"] = rdef.api_version
        obj["kind"] = rdef.kind
        _validate_metadata(rdef, obj)
        if rdef.plural == "jobs" and rdef.group == "batch":
            _validate_job(rdef, obj)
        if not rdef.builtin:
            obj = self._validate_custom(rdef, obj, None, strict)
            meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339()
        meta["generation"] = 1
        self._builtin_defaults(rdef, obj)
        meta["resourceVersion"] = self._next_rv()
        self.objects[key] = obj
        self._emit(rdef, "ADDED", obj)
        if rdef.group == "apiextensions.k8s.io":
            self._crd_changed(obj)
        return self._present(rdef, obj)

    def _builtin_defaults(self, rdef: ResourceDef, obj: JSON) -> None:
        meta = obj["metadata"]
        if rdef.plural == "namespaces" and rdef.group == "":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        elif rdef.plural == "secrets" and rdef.group == "":
            string_data = obj.pop("stringData", None) or {}
            data = obj.setdefault("data", {}) or {}
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
            obj.setdefault("type", "Opaque")
        elif rdef.plural == "pods" and rdef.group == "":
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
            spec = obj.setdefault("spec", {})
            spec.setdefault("restartPolicy", "Always")
        elif rdef.plural == "jobs" and rdef.group == "batch":
            spec = obj.setdefault("spec", {})
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
            spec.setdefault("suspend", False)
            spec.setdefault("completionMode", "NonIndexed")
            uid = meta["uid"]
            labels = {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": meta["name"],
                "controller-uid": uid,
                "job-name": meta["name"],
            }
            if not spec.get("manualSelector"):
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            template = spec.setdefault("template", {})
            template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
            meta.setdefault("labels", {}).update(
                {k: v for k, v in labels.items() if "job-name" in k or "controller-uid" in k}
            )
        elif rdef.group == "apiextensions.k8s.io":
            names = obj.get("spec", {}).get("names", {})
            obj["status"] = {
                "acceptedNames": names,
                "storedVersions": [
                    v["name"] for v in obj.get("spec", {}).get("versions", []) if v.get("storage")
                ],
                "conditions": [
                    {
                        "type": "NamesAccepted",
                        "status": "True",
                        "reason": "NoConflicts",
                        "message": "no conflicts found",
                        "lastTransitionTime": rfc3339(),
                    },
                    {
                        "type": "Established",
                        "status": "True",
                        "reason": "InitialNamesAccepted",
                        "message": "the initial names have been accepted",
                        "lastTransitionTime": rfc3339(),
                    },
                ],
            }

    def _current(self, rdef: ResourceDef, namespace: str | None, name: str) -> tuple[Key, JSON]:
        key = self._key(rdef, namespace, name)
        obj = self.objects.get(key)
        if obj is None:
            raise not_found(rdef.plural, rdef.group, name)
        return key, obj

    def replace(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        name: str,
        body: JSON,
        *,
        subresource: str | None = None,
        strict: bool = False,
    ) -> JSON:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        key, old = self._current(rdef, namespace, name)
        expected = (body.get("metadata") or {}).get("resourceVersion")
        return self._commit(rdef, key, old, copy.deepcopy(body), expected, subresource, strict)

    def patch(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        strict: bool = False,
    ) -> JSON:
        kind = content_type.split(";")[0].strip().lower()
        if not rdef.builtin and kind == "application/strategic-merge-patch+json":
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "strategic merge patch is not supported for custom resources: use --type merge",
            )
        key, old = self._current(rdef, namespace, name)
        patched = apply_patch(content_type, self._present(rdef, old), patch)
        expected = None
        if isinstance(patch, dict):
            expected = (patch.get("metadata") or {}).get("resourceVersion")
        elif isinstance(patch, list):
            # A JSON patch carries its precondition as a "test" operation, which jsonpatch enforces.
            expected = None
        return self._commit(rdef, key, old, patched, expected, subresource, strict)

    def _commit(
        self,
        rdef: ResourceDef,
        key: Key,
        old: JSON,
        new: JSON,
        expected_rv: str | None,
        subresource: str | None,
        strict: bool,
    ) -> JSON:
        name = key[3]
        if expected_rv is not None and str(expected_rv) != old["metadata"]["resourceVersion"]:
            raise conflict(rdef.plural, rdef.group, name)
        if subresource not in (None, "status"):
            raise ApiError(
                405, "MethodNotAllowed", f"the subresource {subresource!r} does not support writes"
            )
        if subresource == "status":
            if not rdef.status_subresource:
                raise not_found(f"{rdef.plural}/status", rdef.group, name)
            candidate = copy.deepcopy(old)
            if "status" in new:
                candidate["status"] = new["status"]
            else:
                candidate.pop("status", None)
        else:
            candidate = new
            candidate.setdefault("metadata", {})
            if rdef.status_subresource:
                if "status" in old:
                    candidate["status"] = copy.deepcopy(old["status"])
                else:
                    candidate.pop("status", None)
            old_meta = old["metadata"]
            meta = candidate["metadata"]
            for server_owned in (
                "uid",
                "creationTimestamp",
                "name",
                "namespace",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if server_owned in old_meta:
                    meta[server_owned] = old_meta[server_owned]
                else:
                    meta.pop(server_owned, None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise invalid(
                        rdef.kind,
                        rdef.group,
                        name,
                        [
                            (
                                "FieldValueForbidden",
                                "metadata.finalizers",
                                "Forbidden: no new finalizers can be added if the object is being deleted, "
                                "found new "
                                f"finalizers {sorted(added)}",
                            )
                        ],
                    )
        candidate["apiVersion"] = rdef.api_version
        candidate["kind"] = rdef.kind
        if rdef.plural == "secrets" and rdef.group == "" and candidate.get("stringData"):
            data = candidate.setdefault("data", {}) or {}
            for k, v in candidate.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            candidate["data"] = data
        if rdef.plural == "jobs" and rdef.group == "batch":
            self._check_job_update(rdef, old, candidate)
        _validate_metadata(rdef, candidate)
        if not rdef.builtin:
            candidate = self._validate_custom(rdef, candidate, old, strict)
        if _spec_part(candidate) != _spec_part(old):
            candidate["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        candidate["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if _without_rv(candidate) == _without_rv(self._present(rdef, old)):
            return self._present(rdef, old)  # a no-op write changes nothing, not even the resourceVersion
        candidate["metadata"]["resourceVersion"] = self._next_rv()
        if candidate["metadata"].get("deletionTimestamp") and not candidate["metadata"].get("finalizers"):
            self.objects[key] = candidate
            self._remove(rdef, key)
            return self._present(rdef, candidate)
        self.objects[key] = candidate
        self._emit(rdef, "MODIFIED", candidate)
        if rdef.group == "apiextensions.k8s.io":
            self._crd_changed(candidate)
        return self._present(rdef, candidate)

    def _check_job_update(self, rdef: ResourceDef, old: JSON, new: JSON) -> None:
        # spec.template and spec.selector of a Job are immutable (Kueue relies on it, so do we).
        old_spec, new_spec = old.get("spec", {}), new.get("spec", {})
        for part in ("template", "selector", "completions", "podFailurePolicy"):
            if part in old_spec and old_spec.get(part) != new_spec.get(part):
                raise invalid(
                    rdef.kind,
                    rdef.group,
                    old["metadata"]["name"],
                    [("FieldValueInvalid", f"spec.{part}", "Invalid value: field is immutable")],
                )

    def delete(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        name: str,
        options: JSON | None = None,
        propagation: str | None = None,
    ) -> JSON:
        key, obj = self._current(rdef, namespace, name)
        options = options or {}
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != obj["metadata"]["uid"]:
            raise conflict(rdef.plural, rdef.group, name)
        if (
            preconditions.get("resourceVersion")
            and preconditions["resourceVersion"] != obj["metadata"]["resourceVersion"]
        ):
            raise conflict(rdef.plural, rdef.group, name)
        policy = propagation or options.get("propagationPolicy") or "Background"
        if policy == "Orphan":
            self._orphan_dependents(obj["metadata"]["uid"])
        if rdef.plural == "namespaces" and rdef.group == "":
            return self._delete_namespace(rdef, key, obj)
        if obj["metadata"].get("finalizers"):
            if not obj["metadata"].get("deletionTimestamp"):
                obj = copy.deepcopy(obj)
                obj["metadata"]["deletionTimestamp"] = rfc3339()
                obj["metadata"]["deletionGracePeriodSeconds"] = 0
                obj["metadata"]["resourceVersion"] = self._next_rv()
                self.objects[key] = obj
                self._emit(rdef, "MODIFIED", obj)
            return self._present(rdef, obj)
        self._remove(rdef, key)
        return self._present(rdef, obj)

    def _delete_namespace(self, rdef: ResourceDef, key: Key, ns_obj: JSON) -> JSON:
        name = key[3]
        ns_obj = copy.deepcopy(ns_obj)
        if not ns_obj["metadata"].get("deletionTimestamp"):
            ns_obj["metadata"]["deletionTimestamp"] = rfc3339()
            ns_obj["status"] = {"phase": "Terminating"}
            ns_obj["metadata"]["resourceVersion"] = self._next_rv()
            self.objects[key] = ns_obj
            self._emit(rdef, "MODIFIED", ns_obj)
        for g, p, ns, obj_name in [k for k in self.objects if k[2] == name]:
            owner = self._resource_for(g, p)
            if owner is not None and (g, p, ns, obj_name) in self.objects:
                self.delete(owner, ns, obj_name)
        self._maybe_finish_namespace(name)
        return self._present(rdef, ns_obj)

    def _maybe_finish_namespace(self, namespace: str) -> None:
        key = ("", "namespaces", "", namespace)
        ns_obj = self.objects.get(key)
        if (
            ns_obj
            and ns_obj["metadata"].get("deletionTimestamp")
            and not any(k[2] == namespace for k in self.objects)
        ):
            self._remove(self.resource("", "v1", "namespaces"), key)

    def _resource_for(self, group: str, plural: str) -> ResourceDef | None:
        return next((r for r in self.resources.values() if r.group == group and r.plural == plural), None)

    def _remove(self, rdef: ResourceDef, key: Key) -> None:
        obj = self.objects.pop(key)
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._emit(rdef, "DELETED", obj)
        if rdef.plural == "pods" and rdef.group == "":
            self.pod_logs.pop((key[2], key[3]), None)
        if rdef.group == "apiextensions.k8s.io":
            self._crd_removed(obj)
        self._collect_garbage(obj["metadata"]["uid"])
        if key[2]:
            self._maybe_finish_namespace(key[2])

    def _dependents(self, owner_uid: str) -> list[Key]:
        return [
            k
            for k, o in self.objects.items()
            if any(ref.get("uid") == owner_uid for ref in o["metadata"].get("ownerReferences") or [])
        ]

    def _collect_garbage(self, owner_uid: str) -> None:
        """Background cascade: dependents whose every owner is gone are deleted (finalizers respected)."""
        for key in self._dependents(owner_uid):
            obj = self.objects.get(key)
            if obj is None:
                continue
            alive = [
                ref
                for ref in obj["metadata"].get("ownerReferences") or []
                if ref.get("uid") != owner_uid and self._uid_exists(ref.get("uid"))
            ]
            if alive:
                continue
            rdef = self._resource_for(key[0], key[1])
            if rdef is not None:
                self.delete(rdef, key[2] or None, key[3])

    def _uid_exists(self, uid: Any) -> bool:
        return any(o["metadata"].get("uid") == uid for o in self.objects.values())

    def _orphan_dependents(self, owner_uid: str) -> None:
        for key in self._dependents(owner_uid):
            rdef = self._resource_for(key[0], key[1])
            obj = self.objects[key]
            refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
            if rdef is not None:
                self.patch(
                    rdef,
                    key[2] or None,
                    key[3],
                    "application/merge-patch+json",
                    {"metadata": {"ownerReferences": refs or None}},
                )

    # -- custom resource definitions -------------------------------------------------------------------
    def _crd_changed(self, crd: JSON) -> None:
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        group = spec.get("group", "")
        for stale in [
            k
            for k, r in self.resources.items()
            if not r.builtin and r.group == group and r.plural == names.get("plural")
        ]:
            del self.resources[stale]
        for version in spec.get("versions", []):
            if not version.get("served", True):
                continue
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            self.register(
                ResourceDef(
                    group=group,
                    version=version["name"],
                    plural=names["plural"],
                    singular=names.get("singular") or names.get("kind", "").lower(),
                    kind=names["kind"],
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                    short_names=list(names.get("shortNames") or []),
                    categories=list(names.get("categories") or []),
                    status_subresource="status" in (version.get("subresources") or {}),
                    builtin=False,
                    schema=CustomResourceSchema(schema),
                    printer_columns=list(version.get("additionalPrinterColumns") or []),
                )
            )

    def _crd_removed(self, crd: JSON) -> None:
        spec = crd.get("spec", {})
        group, plural = spec.get("group", ""), spec.get("names", {}).get("plural")
        for key in [k for k in self.objects if k[0] == group and k[1] == plural]:
            rdef = self._resource_for(group, str(plural))
            if rdef is not None and key in self.objects:
                self._remove(rdef, key)
        for stale in [
            k for k, r in self.resources.items() if not r.builtin and r.group == group and r.plural == plural
        ]:
            del self.resources[stale]


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def _label_causes(labels: Any, where: str) -> list[tuple[str, str, str]]:
    causes: list[tuple[str, str, str]] = []
    if not isinstance(labels, dict):
        return causes
    for key, value in labels.items():
        prefix, _, name = str(key).rpartition("/")
        if len(name) > 63 or not _LABEL_NAME.match(name) or (prefix and not _DNS_SUBDOMAIN.match(prefix)):
            causes.append(
                (
                    "FieldValueInvalid",
                    where,
                    f'Invalid value: "{key}": name part must consist of '
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character (at most 63 characters)",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                (
                    "FieldValueInvalid",
                    where,
                    f'Invalid value: "{value}": a valid label must be an '
                    "empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
                    "and end with an alphanumeric character (at most 63 characters)",
                )
            )
    return causes


def _validate_metadata(rdef: ResourceDef, obj: JSON) -> None:
    meta = obj.get("metadata") or {}
    causes = _label_causes(meta.get("labels"), "metadata.labels")
    annotations = meta.get("annotations") or {}
    if any(not isinstance(v, str) for v in annotations.values()):
        causes.append(
            ("FieldValueInvalid", "metadata.annotations", "Invalid value: annotation values must be strings")
        )
    if causes:
        raise invalid(rdef.kind, rdef.group, str(meta.get("name", "")), causes)


def _validate_job(rdef: ResourceDef, job: JSON) -> None:
    """The Job validation a real server does that the operator's Job builder could get wrong."""
    spec = job.get("spec") or {}
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    causes = _label_causes((template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels")
    containers = pod_spec.get("containers") or []
    if not containers:
        causes.append(("FieldValueRequired", "spec.template.spec.containers", "Required value"))
    for index, container in enumerate(containers):
        for required in ("name", "image"):
            if not container.get(required):
                causes.append(
                    (
                        "FieldValueRequired",
                        f"spec.template.spec.containers[{index}].{required}",
                        "Required value",
                    )
                )
        for env_index, env in enumerate(container.get("env") or []):
            if not env.get("name"):
                causes.append(
                    (
                        "FieldValueRequired",
                        f"spec.template.spec.containers[{index}].env[{env_index}].name",
                        "Required value",
                    )
                )
            if "value" in env and not isinstance(env["value"], str):
                causes.append(
                    (
                        "FieldValueTypeInvalid",
                        f"spec.template.spec.containers[{index}].env[{env_index}].value",
                        "Invalid value: env values must be strings",
                    )
                )
    restart = pod_spec.get("restartPolicy", "Always")
    if restart not in ("Never", "OnFailure"):
        causes.append(
            (
                "FieldValueNotSupported",
                "spec.template.spec.restartPolicy",
                f'Unsupported value: "{restart}": supported values: "OnFailure", "Never"',
            )
        )
    elif spec.get("podFailurePolicy") and restart != "Never":
        causes.append(
            (
                "FieldValueInvalid",
                "spec.template.spec.restartPolicy",
                f'Invalid value: "{restart}": only "Never" is supported when podFailurePolicy is specified',
            )
        )
    for field_name in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        value = spec.get(field_name)
        if value is not None and (
            not isinstance(value, int) or value < (1 if field_name == "activeDeadlineSeconds" else 0)
        ):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"spec.{field_name}",
                    f"Invalid value: {value}: must be greater "
                    "than or equal to " + ("1" if field_name == "activeDeadlineSeconds" else "0"),
                )
            )
    if causes:
        raise invalid(rdef.kind, rdef.group, str((job.get("metadata") or {}).get("name", "")), causes)


def job_selector(job: JSON) -> str:
    return selector_from_match_labels((job.get("spec", {}).get("selector") or {}).get("matchLabels") or {})


__all__ = ["BUILTINS", "Key", "ResourceDef", "Store", "WatchEvent", "job_selector", "log"]
