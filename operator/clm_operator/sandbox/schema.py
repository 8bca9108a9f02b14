"""What a real API server does with a CRD's ``openAPIV3Schema``: defaulting, pruning (or strict rejection)
of unknown fields, validation answered as 422 field errors, the ``self == oldSelf`` immutability rule,
and additionalPrinterColumns evaluated by JSONPath for server-side ``kubectl get`` tables."""

from __future__ import annotations

import copy
import logging
import re
from functools import lru_cache
from typing import Any

import jsonschema
from jsonpath_ng.ext.parser import parse as jsonpath_parse

from clm_operator.sandbox.apimachinery import JSON

log = logging.getLogger(__name__)

IMMUTABLE_RULE = "self==oldSelf"
_ROOT_KEYS = {"apiVersion", "kind", "metadata"}


def field_path(parts: list[Any] | tuple[Any, ...]) -> str:
    """``['spec', 'items', 0, 'name']`` -> ``spec.items[0].name`` as a real server writes it."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _to_jsonschema(schema: Any) -> Any:
    """OpenAPI v3.0 structural schema -> JSON Schema draft 4: ``nullable`` becomes a ``null`` type,
    ``x-kubernetes-int-or-string`` an integer-or-string type; the Kubernetes extensions are dropped."""
    if isinstance(schema, list):
        return [_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: JSON = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "default", "description", "example"):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: _to_jsonschema(v) for k, v in value.items()}
        else:
            out[key] = _to_jsonschema(value)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if schema.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    if schema.get("nullable") and "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def _display(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


class CustomResourceSchema:
    """One served version's schema of one CRD."""

    def __init__(self, schema: JSON | None) -> None:
        self.schema: JSON = schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        root = copy.deepcopy(self.schema)
        # metadata is validated by the server itself (name, labels...), never by the CRD's schema.
        if isinstance(root.get("properties"), dict):
            root["properties"].pop("metadata", None)
        self._validator = jsonschema.Draft4Validator(_to_jsonschema(root))
        self.immutable_paths: list[tuple[list[str], str]] = []
        self._collect_rules(self.schema, [])

    def _collect_rules(self, node: Any, path: list[str]) -> None:
        if not isinstance(node, dict):
            return
        for rule in node.get("x-kubernetes-validations", []) or []:
            text = re.sub(r"\s+", "", str(rule.get("rule", "")))
            if text == IMMUTABLE_RULE:
                self.immutable_paths.append((path, str(rule.get("message") or "Value is immutable")))
            else:
                # Only the immutability rule is implemented here; a real server would evaluate this CEL.
                log.warning(
                    "sandbox: CEL rule %r at %s is accepted but not evaluated",
                    rule.get("rule"),
                    field_path(path) or "<root>",
                )
        for name, child in (node.get("properties") or {}).items():
            self._collect_rules(child, [*path, name])

    # -- defaulting and pruning ------------------------------------------------------------------------
    def default(self, obj: JSON) -> JSON:
        result = copy.deepcopy(obj)
        self._default(self.schema, result)
        return result

    def _default(self, schema: Any, value: Any) -> None:
        if not isinstance(schema, dict):
            return
        if isinstance(value, dict):
            for name, child in (schema.get("properties") or {}).items():
                if name not in value and isinstance(child, dict) and "default" in child:
                    value[name] = copy.deepcopy(child["default"])
                if name in value:
                    self._default(child, value[name])
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                for item in value.values():
                    self._default(extra, item)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for item in value:
                self._default(schema["items"], item)

    def prune(self, obj: JSON) -> tuple[JSON, list[str]]:
        """Drop fields the schema does not know (as a real server does); returns the dropped paths."""
        result = copy.deepcopy(obj)
        dropped: list[str] = []
        self._prune(self.schema, result, [], dropped, root=True)
        return result, dropped

    def _prune(
        self, schema: Any, value: Any, path: list[Any], dropped: list[str], root: bool = False
    ) -> None:
        if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        if isinstance(value, dict):
            props = schema.get("properties") or {}
            extra = schema.get("additionalProperties")
            for name in list(value):
                if root and name in _ROOT_KEYS:
                    continue
                if name in props:
                    self._prune(props[name], value[name], [*path, name], dropped)
                elif isinstance(extra, dict):
                    self._prune(extra, value[name], [*path, name], dropped)
                elif extra is True:
                    continue
                elif props or schema.get("type") == "object":
                    dropped.append(field_path([*path, name]))
                    del value[name]
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                self._prune(schema["items"], item, [*path, index], dropped)

    # -- validation ------------------------------------------------------------------------------------
    def validate(self, obj: JSON) -> list[tuple[str, str, str]]:
        """Schema errors as (reason, field, message) causes, in a real server's wording."""
        causes: list[tuple[str, str, str]] = []
        for error in sorted(self._validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
            path = list(error.absolute_path)
            where = field_path(path)
            value = error.instance
            kind = error.validator
            if kind == "required":
                missing = [
                    name for name in error.validator_value if not isinstance(value, dict) or name not in value
                ]
                for name in missing:
                    causes.append(("FieldValueRequired", field_path([*path, name]), "Required value"))
                continue
            if kind == "enum":
                allowed = ", ".join(_display(v) for v in error.validator_value)
                causes.append(
                    (
                        "FieldValueNotSupported",
                        where,
                        f"Unsupported value: {_display(value)}: supported values: {allowed}",
                    )
                )
            elif kind == "type":
                causes.append(
                    (
                        "FieldValueTypeInvalid",
                        where,
                        f"Invalid value: {_display(value)}: {where} in body must be of type "
                        f"{error.validator_value}: {_display(value)}",
                    )
                )
            elif kind == "minimum":
                op = "greater than" if error.schema.get("exclusiveMinimum") else "greater than or equal to"
                causes.append(
                    (
                        "FieldValueInvalid",
                        where,
                        f"Invalid value: {_display(value)}: {where} in body should be {op} "
                        f"{error.validator_value}",
                    )
                )
            elif kind == "maximum":
                op = "less than" if error.schema.get("exclusiveMaximum") else "less than or equal to"
                causes.append(
                    (
                        "FieldValueInvalid",
                        where,
                        f"Invalid value: {_display(value)}: {where} in body should be {op} "
                        f"{error.validator_value}",
                    )
                )
            elif kind == "pattern":
                causes.append(
                    (
                        "FieldValueInvalid",
                        where,
                        f"Invalid value: {_display(value)}: {where} in body should match "
                        f"'{error.validator_value}'",
                    )
                )
            else:
                causes.append(
                    ("FieldValueInvalid", where, f"Invalid value: {_display(value)}: {error.message}")
                )
        return causes

    def immutability_errors(self, old: JSON, new: JSON) -> list[tuple[str, str, str]]:
        causes: list[tuple[str, str, str]] = []
        for path, message in self.immutable_paths:
            missing = object()
            before: Any = old
            after: Any = new
            for part in path:
                before = before.get(part, missing) if isinstance(before, dict) else missing
                after = after.get(part, missing) if isinstance(after, dict) else missing
            # A CEL transition rule is evaluated only when both the old and the new value exist.
            if before is missing or after is missing:
                continue
            if before != after:
                causes.append(
                    ("FieldValueInvalid", field_path(path), f"Invalid value: {_display(after)}: {message}")
                )
        return causes


@lru_cache(maxsize=256)
def _compiled(json_path: str) -> Any:
    expression = json_path if json_path.startswith("$") else "$" + json_path
    return jsonpath_parse(expression)


def evaluate_json_path(obj: JSON, json_path: str) -> Any:
    """The first value a printer column's JSONPath selects (None when nothing matches)."""
    try:
        matches = _compiled(json_path).find(obj)
    except Exception:  # a bad path yields an empty cell, as kubectl does, rather than a failed request
        log.warning("sandbox: cannot evaluate printer column JSONPath %r", json_path)
        return None
    return matches[0].value if matches else None
