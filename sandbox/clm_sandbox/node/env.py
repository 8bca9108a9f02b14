"""A container's environment, built the way a kubelet builds it (pkg/kubelet/kubelet_pods.go).

Order: the ``kubernetes`` Service's variables, then ``envFrom`` (Secrets/ConfigMaps, with prefixes; keys that
are not valid variable names are skipped and reported), then ``env`` in order, where a later entry overrides
an earlier one. ``value`` strings expand ``$(NAME)`` against everything defined before them (``$$`` escapes,
an undefined reference stays as written); values from ``valueFrom`` are never expanded. A missing Secret,
ConfigMap or key that is not ``optional`` raises :class:`ContainerConfigError` with the kubelet's message:
the pod then waits with reason ``CreateContainerConfigError`` and the kubelet retries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from clm_sandbox.node.images import DEFAULT_PATH

# (kind "Secret" | "ConfigMap", namespace, name) -> the object's data as bytes (a Secret's decoded, a
# ConfigMap's data and binaryData), or None when the object does not exist.
Lookup = Callable[[str, str, str], "dict[str, bytes] | None"]

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SUBSCRIPT = re.compile(r"^(metadata\.(?:labels|annotations))\['(.*)'\]$")


class ContainerConfigError(Exception):
    """The container cannot be configured yet (a missing Secret, ConfigMap or key); the kubelet retries."""


@dataclass(frozen=True)
class NodeContext:
    """What the node knows about where a pod runs: its name, the pod's and host's IPs, allocatable."""

    node_name: str
    pod_ip: str = "127.0.0.1"
    host_ip: str = "127.0.0.1"
    allocatable: Mapping[str, str] = field(default_factory=dict)


def is_env_name(name: str) -> bool:
    """Kubernetes' IsEnvVarName: ``[-._a-zA-Z][-._a-zA-Z0-9]*``."""
    return bool(_ENV_NAME.match(name))


def expand(text: str, defined: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion (third_party/forked/golang/expansion).

    ``$(NAME)`` becomes ``defined[NAME]`` when defined and stays literally otherwise; ``$$`` is a
    literal ``$`` (so ``$$(NAME)`` yields ``$(NAME)``); any other ``$`` and an unclosed ``$(`` are kept
    as written.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "$" and i + 1 < n:
            following = text[i + 1]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2 : close]
                    out.append(defined[name] if name in defined else text[i : close + 1])
                    i = close + 1
                    continue
        out.append(char)
        i += 1
    return "".join(out)


def service_env(host: str, port: int | str) -> dict[str, str]:
    """The variables every container gets for the ``kubernetes`` Service (in-cluster clients read these)."""
    port = str(port)
    url = f"tcp://{host}:{port}"
    prefix = f"KUBERNETES_PORT_{port}_TCP"
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": url,
        prefix: url,
        f"{prefix}_PROTO": "tcp",
        f"{prefix}_PORT": port,
        f"{prefix}_ADDR": host,
    }


def field_path_value(pod: Mapping[str, Any], path: str, context: NodeContext, *, volume: bool = False) -> str:
    """The value of a downward-API ``fieldPath`` (env: single values only; volumes may also take the whole
    ``metadata.labels``/``metadata.annotations`` map, written as sorted ``key="value"`` lines)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple: dict[str, str] = {
        "metadata.name": str(meta.get("name", "")),
        "metadata.namespace": str(meta.get("namespace", "")),
        "metadata.uid": str(meta.get("uid", "")),
        "spec.nodeName": str(spec.get("nodeName") or context.node_name),
        "spec.serviceAccountName": str(spec.get("serviceAccountName") or "default"),
        "status.hostIP": context.host_ip,
        "status.hostIPs": context.host_ip,
        "status.podIP": context.pod_ip,
        "status.podIPs": context.pod_ip,
    }
    if path in simple:
        return simple[path]
    subscript = _SUBSCRIPT.match(path)
    if subscript is not None:
        source = meta.get(subscript.group(1).split(".")[1]) or {}
        return str(source.get(subscript.group(2), ""))
    if volume and path in ("metadata.labels", "metadata.annotations"):
        source = meta.get(path.split(".")[1]) or {}
        return "".join(f"{key}={_go_quote(str(value))}\n" for key, value in sorted(source.items()))
    raise ContainerConfigError(f'unsupported fieldPath "{path}"')


def _go_quote(value: str) -> str:
    """Go's %q for the common cases the downward API writes (quotes, backslashes, control characters)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def resource_field_value(
    pod: Mapping[str, Any], container_name: str, ref: Mapping[str, Any], context: NodeContext
) -> str:
    """A ``resourceFieldRef``: the container's request or limit in units of ``divisor`` (rounded up).

    An unset limit is the node's allocatable, as the kubelet reports it; an unset request is 0.
    """
    target = ref.get("containerName") or container_name
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    container = next((c for c in containers if c.get("name") == target), None)
    if container is None:
        raise ContainerConfigError(f'resourceFieldRef: no container "{target}" in the pod')
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise ContainerConfigError(f'unsupported resourceFieldRef resource "{resource}"')
    amounts = (container.get("resources") or {}).get(kind) or {}
    raw = amounts.get(name)
    if raw is None:
        raw = context.allocatable.get(name, "0") if kind == "limits" else "0"
    value: Decimal = parse_quantity(raw)
    divisor: Decimal = parse_quantity(ref.get("divisor") or "1")
    if divisor <= 0:
        raise ContainerConfigError(f'resourceFieldRef "{resource}": divisor must be positive')
    if name == "cpu":  # the kubelet divides milli-values, so a 0.5 divisor is 500m exactly
        return str(math.ceil(math.ceil(value * 1000) / math.ceil(divisor * 1000)))
    return str(math.ceil(value / divisor))


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    lookup: Lookup,
    services: Mapping[str, str],
    context: NodeContext,
) -> tuple[dict[str, str], list[str]]:
    """The container's variables (insertion order = definition order) and the envFrom keys skipped."""
    namespace = str((pod.get("metadata") or {}).get("namespace", ""))
    env: dict[str, str] = dict(services)
    skipped: list[str] = []

    def data(kind: str, name: str, optional: bool) -> dict[str, str]:
        found = lookup(kind, namespace, name)
        if found is None:
            if optional:
                return {}
            raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
        # Environment values are bytes to the OS: surrogateescape carries any byte through to execve.
        return {key: value.decode("utf-8", "surrogateescape") for key, value in found.items()}

    for source in container.get("envFrom") or []:
        if "secretRef" in source:
            kind, ref = "Secret", source["secretRef"]
        elif "configMapRef" in source:
            kind, ref = "ConfigMap", source["configMapRef"]
        else:
            continue
        prefix = str(source.get("prefix") or "")
        for key, value in data(kind, str(ref.get("name", "")), bool(ref.get("optional"))).items():
            if is_env_name(prefix + key):
                env[prefix + key] = value
            else:
                skipped.append(prefix + key)

    for item in container.get("env") or []:
        name = str(item["name"])
        value_from = item.get("valueFrom")
        if not value_from:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        if "secretKeyRef" in value_from or "configMapKeyRef" in value_from:
            kind = "Secret" if "secretKeyRef" in value_from else "ConfigMap"
            ref = value_from["secretKeyRef" if kind == "Secret" else "configMapKeyRef"]
            optional = bool(ref.get("optional"))
            values = data(kind, str(ref.get("name", "")), optional)
            key = str(ref.get("key", ""))
            if key in values:
                env[name] = values[key]
            elif not optional:
                raise ContainerConfigError(f"couldn't find key {key} in {kind} {namespace}/{ref.get('name')}")
        elif "fieldRef" in value_from:
            env[name] = field_path_value(pod, str(value_from["fieldRef"].get("fieldPath", "")), context)
        elif "resourceFieldRef" in value_from:
            env[name] = resource_field_value(
                pod, str(container.get("name", "")), value_from["resourceFieldRef"], context
            )
        else:
            raise ContainerConfigError(f"env {name}: unsupported valueFrom {sorted(value_from)}")
    return env, skipped


def process_env(
    image_env: Mapping[str, str], env: Mapping[str, str], *, hostname: str, home: str
) -> dict[str, str]:
    """The environment the process starts with: the image's ENV under the container's, as a runtime merges
    them, plus what the runtime adds (PATH when the image sets none, HOSTNAME, HOME when nobody sets it)."""
    merged: dict[str, str] = {"PATH": DEFAULT_PATH, **image_env, "HOSTNAME": hostname, **env}
    merged.setdefault("HOME", home)
    return merged
