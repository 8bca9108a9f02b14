"""API-machinery pieces of the emulated API server: Status errors, selectors, patches, timestamps.

Kept free of HTTP so that they can be unit-tested and reused by the in-process Job executor.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import jsonpatch

JSON = dict[str, Any]


def rfc3339(instant: datetime | None = None) -> str:
    """Kubernetes timestamps: second precision, UTC, trailing Z."""
    return (instant or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def human_duration(seconds: float) -> str:
    """The apimachinery HumanDuration shape used in AGE columns (``45s``, ``3m``, ``2h5m``, ``4d``)."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m{rem}s" if rem else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rem_m = (s % 3600) // 60
        return f"{hours}h{rem_m}m" if rem_m else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = s // 86400
    return f"{days}d"


class ApiError(Exception):
    """An error answered as a Kubernetes ``Status`` object, in the shape a real API server uses."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> JSON:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(plural, group)} "{name}" not found',
        {"name": name, "group": group, "kind": plural},
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(plural, group)} "{name}" already exists',
        {"name": name, "group": group, "kind": plural},
    )


def conflict(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": the object has been modified;'
        " please apply your changes to the latest version and try again",
        {"name": name, "group": group, "kind": plural},
    )


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid; ``causes`` are (reason, field, message) as in ``details.causes`` of a real server."""
    rendered = [f"{field}: {message}" for _, field, message in causes]
    summary = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{kind}.{group or ""} "{name}" is invalid: {summary}'.replace('. "', ' "'),
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": r, "field": f, "message": m} for r, f, m in causes],
        },
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


# --- label selectors --------------------------------------------------------------------------------

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")

LabelPredicate = Callable[[Mapping[str, str]], bool]


def _split_requirements(selector: str) -> list[str]:
    """Split on commas that are not inside ``in (a,b)`` parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return [p for p in parts if p.strip()]


def _label_equality(key: str, value: str, negate: bool) -> LabelPredicate:
    def check(labels: Mapping[str, str]) -> bool:
        return (labels.get(key) == value) != negate

    return check


def _label_exists(key: str, negate: bool) -> LabelPredicate:
    def check(labels: Mapping[str, str]) -> bool:
        return (key in labels) != negate

    return check


def _label_set(key: str, values: set[str], negate: bool) -> LabelPredicate:
    def check(labels: Mapping[str, str]) -> bool:
        return (labels.get(key) in values) != negate

    return check


def parse_label_selector(selector: str | None) -> LabelPredicate:
    """``=``, ``==``, ``!=``, ``in``, ``notin``, ``key`` (exists) and ``!key`` (does not exist)."""
    if not selector or not selector.strip():
        return lambda labels: True
    checks: list[LabelPredicate] = []
    for requirement in _split_requirements(selector):
        eq = _EQ_RE.match(requirement)
        if eq:
            key, op, value = eq.groups()
            checks.append(_label_equality(key, value, negate=op == "!="))
            continue
        match = _SET_RE.match(requirement)
        if not match:
            raise bad_request(f"unable to parse requirement: {requirement!r}: invalid label selector")
        negate, key, op, values_text = match.groups()
        if op is None:
            checks.append(_label_exists(key, negate=bool(negate)))
            continue
        if negate:
            raise bad_request(f"unable to parse requirement: {requirement!r}")
        values = {v.strip() for v in values_text.split(",") if v.strip()}
        checks.append(_label_set(key, values, negate=op == "notin"))
    return lambda labels: all(check(labels) for check in checks)


def selector_from_match_labels(match_labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


# --- field selectors --------------------------------------------------------------------------------

ObjectPredicate = Callable[[JSON], bool]


def _dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def parse_field_selector(selector: str | None) -> ObjectPredicate:
    """Equality-based field selectors on any dotted path (metadata.name, involvedObject.uid, status.phase,
    spec.nodeName...). A real server supports a per-kind subset; accepting every path is laxer but
    harmless."""
    if not selector or not selector.strip():
        return lambda obj: True
    checks: list[ObjectPredicate] = []
    for requirement in _split_requirements(selector):
        match = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", requirement)
        if not match:
            raise bad_request(f"invalid field selector: {requirement!r}")
        path, op, value = match.groups()

        def check(obj: JSON, p: str = path, o: str = op, v: str = value) -> bool:
            actual = _dig(obj, p)
            actual_text = "" if actual is None else str(actual)
            return (actual_text == v) if o != "!=" else (actual_text != v)

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)


# --- patches ----------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: JSON = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# The list keys of the built-in types that a strategic merge patch merges by (patchMergeKey).
_MERGE_KEYS = ("name", "type", "uid", "containerPort", "mountPath", "ip", "devicePath")


def _merge_key(items: list[Any]) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in _MERGE_KEYS:
        if all(key in i for i in items):
            return key
    return None


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic-ish merge patch for built-in kinds: like a merge patch, except that lists of objects with a
    merge key (containers/env by ``name``, conditions by ``type``, ownerReferences by ``uid``) are merged
    item by item, ``$patch: delete`` items are removed and ``$setElementOrder``/``$retainKeys`` directives
    are dropped. Lists of scalars are replaced, except ``finalizers`` which merge as a set."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: JSON = copy.deepcopy(target) if isinstance(target, dict) else {}
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            existing = result[key]
            merge_key = _merge_key([*existing, *[v for v in value if isinstance(v, dict)]])
            if merge_key is not None and all(isinstance(v, dict) for v in value):
                merged = [copy.deepcopy(i) for i in existing]
                for item in value:
                    position = next(
                        (n for n, cur in enumerate(merged) if cur.get(merge_key) == item.get(merge_key)), None
                    )
                    if item.get("$patch") == "delete":
                        if position is not None:
                            merged.pop(position)
                    elif position is None:
                        merged.append({k: v for k, v in item.items() if not k.startswith("$")})
                    else:
                        merged[position] = strategic_merge_patch(merged[position], item)
                result[key] = merged
            elif key == "finalizers":
                result[key] = list(dict.fromkeys([*existing, *value]))
            else:
                result[key] = copy.deepcopy(value)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    # $deleteFromPrimitiveList/<field>: [values] removes scalars from a list (kubectl uses it for finalizers).
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/") and isinstance(value, list):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
    return result


def json_patch(target: JSON, operations: Any) -> JSON:
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations")
    try:
        patched: JSON = jsonpatch.apply_patch(target, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise ApiError(422, "Invalid", f"the JSON patch could not be applied: {exc}") from exc
    return patched


def apply_patch(content_type: str, target: JSON, patch: Any) -> JSON:
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json-patch+json":
        return json_patch(target, patch)
    if kind == "application/strategic-merge-patch+json":
        result: JSON = strategic_merge_patch(target, patch)
        return result
    if kind in ("application/merge-patch+json", "application/apply-patch+yaml", "application/json"):
        merged: JSON = merge_patch(target, patch)
        return merged
    raise ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - "
        f"accepted media types include: application/json-patch+json, application/merge-patch+json, "
        f"application/apply-patch+yaml, application/strategic-merge-patch+json (got {kind!r})",
    )
