"""Just enough of Kubernetes' protobuf encoding to read what kubectl's typed commands send.

``kubectl create namespace|secret|configmap|serviceaccount`` encode the object as protobuf (the envelope
``k8s\\0`` + ``runtime.Unknown``) instead of JSON. Decoding every built-in type would need all the generated
schemas; these four kinds and ObjectMeta are small, so their field numbers (from k8s.io/api
core/v1/generated.proto and apimachinery meta/v1/generated.proto) are written out here. Anything else is
refused with a 415 that says to use ``kubectl apply -f``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clm_operator.sandbox.apimachinery import JSON, ApiError

MAGIC = b"k8s\x00"

Fields = list[tuple[int, int, Any]]  # (field number, wire type, value: int or bytes)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Fields:
    out: Fields = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, wire, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, wire, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            out.append((number, wire, data[pos : pos + 8]))
            pos += 8
        elif wire == 5:
            out.append((number, wire, data[pos : pos + 4]))
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def _text(value: Any) -> str:
    return bytes(value).decode("utf-8")


def _string_map(entries: list[bytes], as_bytes: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for entry in entries:
        fields = {number: value for number, _, value in _fields(entry)}
        key = _text(fields.get(1, b""))
        raw = bytes(fields.get(2, b""))
        result[key] = raw if as_bytes else raw.decode("utf-8")
    return result


def _group(fields: Fields) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = {}
    for number, _, value in fields:
        grouped.setdefault(number, []).append(value)
    return grouped


def _object_meta(data: bytes) -> JSON:
    f = _group(_fields(data))
    meta: JSON = {}
    for number, name in ((1, "name"), (2, "generateName"), (3, "namespace"), (6, "resourceVersion")):
        if number in f and f[number][-1]:  # proto2 sends unset strings as "": that means absent
            meta[name] = _text(f[number][-1])
    if 11 in f:
        meta["labels"] = _string_map(f[11])
    if 12 in f:
        meta["annotations"] = _string_map(f[12])
    if 14 in f:
        meta["finalizers"] = [_text(v) for v in f[14]]
    if 13 in f:
        refs = []
        for raw in f[13]:
            r = _group(_fields(raw))
            ref: JSON = {
                k: _text(r[n][-1])
                for n, k in ((5, "apiVersion"), (1, "kind"), (3, "name"), (4, "uid"))
                if n in r
            }
            if 6 in r:
                ref["controller"] = bool(r[6][-1])
            if 7 in r:
                ref["blockOwnerDeletion"] = bool(r[7][-1])
            refs.append(ref)
        meta["ownerReferences"] = refs
    return meta


def _secret(f: dict[int, list[Any]]) -> JSON:
    import base64

    body: JSON = {}
    if 2 in f:
        body["data"] = {k: base64.b64encode(v).decode() for k, v in _string_map(f[2], as_bytes=True).items()}
    if 3 in f and f[3][-1]:
        body["type"] = _text(f[3][-1])
    if 4 in f:
        body["stringData"] = _string_map(f[4])
    if 5 in f:
        body["immutable"] = bool(f[5][-1])
    return body


def _configmap(f: dict[int, list[Any]]) -> JSON:
    import base64

    body: JSON = {}
    if 2 in f:
        body["data"] = _string_map(f[2])
    if 3 in f:
        body["binaryData"] = {
            k: base64.b64encode(v).decode() for k, v in _string_map(f[3], as_bytes=True).items()
        }
    if 4 in f:
        body["immutable"] = bool(f[4][-1])
    return body


def _namespace(f: dict[int, list[Any]]) -> JSON:
    if 2 in f:
        spec = _group(_fields(f[2][-1]))
        return {"spec": {"finalizers": [_text(v) for v in spec.get(1, [])]}}
    return {}


def _service_account(f: dict[int, list[Any]]) -> JSON:
    body: JSON = {}
    if 2 in f:  # ObjectReference: name is field 3
        body["secrets"] = [{"name": _text(_group(_fields(v)).get(3, [b""])[-1])} for v in f[2]]
    if 3 in f:  # LocalObjectReference: name is field 1
        body["imagePullSecrets"] = [{"name": _text(_group(_fields(v)).get(1, [b""])[-1])} for v in f[3]]
    if 4 in f:
        body["automountServiceAccountToken"] = bool(f[4][-1])
    return body


_KINDS: dict[str, Callable[[dict[int, list[Any]]], JSON]] = {
    "Secret": _secret,
    "ConfigMap": _configmap,
    "Namespace": _namespace,
    "ServiceAccount": _service_account,
}


def decode(body: bytes) -> JSON:
    """A protobuf-encoded core/v1 object as the JSON a client would have sent."""
    unsupported = ApiError(
        415,
        "UnsupportedMediaType",
        "the sandbox API server decodes protobuf only for Namespace, Secret, ConfigMap and "
        "ServiceAccount: send JSON (kubectl apply -f / create -f)",
    )
    if not body.startswith(MAGIC):
        raise unsupported
    try:
        envelope = _group(_fields(body[len(MAGIC) :]))
        type_meta = _group(_fields(envelope.get(1, [b""])[-1]))
        api_version = _text(type_meta.get(1, [b""])[-1])
        kind = _text(type_meta.get(2, [b""])[-1])
        if api_version != "v1" or kind not in _KINDS:
            raise unsupported
        fields = _group(_fields(envelope.get(2, [b""])[-1]))
        obj: JSON = {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": _object_meta(fields[1][-1]) if 1 in fields else {},
        }
        obj.update(_KINDS[kind](fields))
        return obj
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ApiError(400, "BadRequest", f"cannot decode the protobuf body: {exc}") from exc
