"""The mini-scheduler of a one-node cluster: does a pod fit this node (kube-scheduler's filters, simplified).

Filters, in kube-scheduler's terms: NodeUnschedulable, NodeName, NodeSelector + required node affinity
(matchExpressions In/NotIn/Exists/DoesNotExist/Gt/Lt and matchFields on metadata.name), TaintToleration
(NoSchedule/NoExecute), NodeResourcesFit on requests (init containers count as kube-scheduler counts them:
max(largest init request, sum of the regular containers) plus overhead) and the pod count. No preemption,
no inter-pod affinity, no topology spread: one node has nothing to spread over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

DEFAULT_SCHEDULER = "default-scheduler"


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Decimal]:
    """The pod's effective requests: per resource max(any init container, sum of containers) + overhead."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for container in spec.get("containers") or []:
        for name, raw in ((container.get("resources") or {}).get("requests") or {}).items():
            total[name] = total.get(name, Decimal(0)) + parse_quantity(raw)
    for container in spec.get("initContainers") or []:
        for name, raw in ((container.get("resources") or {}).get("requests") or {}).items():
            total[name] = max(total.get(name, Decimal(0)), parse_quantity(raw))
    for name, raw in (spec.get("overhead") or {}).items():
        total[name] = total.get(name, Decimal(0)) + parse_quantity(raw)
    return total


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Whether one of ``tolerations`` tolerates ``taint`` (Kubernetes' ToleratesTaint)."""
    for toleration in tolerations:
        effect = toleration.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        key = toleration.get("key") or ""
        operator = toleration.get("operator") or "Equal"
        if operator == "Exists":
            if not key or key == taint.get("key"):
                return True
            continue
        if key == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _expression_matches(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key = str(expression.get("key", ""))
    operator = expression.get("operator")
    values = [str(v) for v in expression.get("values") or []]
    present = key in labels
    if operator == "In":
        return present and labels[key] in values
    if operator == "NotIn":
        return not present or labels[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            mine, theirs = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return mine > theirs if operator == "Gt" else mine < theirs
    return False


def _term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    fields = {"metadata.name": str((node.get("metadata") or {}).get("name", ""))}
    expressions = term.get("matchExpressions") or []
    field_expressions = term.get("matchFields") or []
    if not expressions and not field_expressions:
        return False  # an empty term matches no node
    return all(_expression_matches(e, labels) for e in expressions) and all(
        _expression_matches(e, fields) for e in field_expressions
    )


def node_affinity_ok(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """nodeSelector and requiredDuringSchedulingIgnoredDuringExecution (terms are ORed)."""
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if terms is None:
        return True
    return any(_term_matches(term, node) for term in terms)


def unschedulable_reasons(
    pod: Mapping[str, Any], node: Mapping[str, Any], bound: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Why ``pod`` does not fit ``node`` next to the non-terminal ``bound`` pods (empty: it fits)."""
    spec = pod.get("spec") or {}
    node_spec = node.get("spec") or {}
    reasons: list[str] = []
    if node_spec.get("unschedulable") and not tolerates(
        spec.get("tolerations") or [], {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    ):
        reasons.append("node(s) were unschedulable")
    if not node_affinity_ok(pod, node):
        reasons.append("node(s) didn't match Pod's node affinity/selector")
    for taint in node_spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(
            spec.get("tolerations") or [], taint
        ):
            value = f": {taint['value']}" if taint.get("value") else ""
            reasons.append(f"node(s) had untolerated taint {{{taint.get('key')}{value}}}")
            break
    allocatable = {
        k: parse_quantity(v) for k, v in ((node.get("status") or {}).get("allocatable") or {}).items()
    }
    used: dict[str, Decimal] = {}
    count = 0
    for other in bound:
        count += 1
        for name, amount in pod_requests(other).items():
            used[name] = used.get(name, Decimal(0)) + amount
    if count + 1 > allocatable.get("pods", Decimal(110)):
        reasons.append("Too many pods")
    for name, amount in sorted(pod_requests(pod).items()):
        if amount <= 0:
            continue
        if used.get(name, Decimal(0)) + amount > allocatable.get(name, Decimal(0)):
            reasons.append(f"Insufficient {name}")
    return reasons


def unschedulable_message(reasons: list[str]) -> str:
    """kube-scheduler's FailedScheduling text for a one-node cluster."""
    return "0/1 nodes are available: " + ", ".join(f"1 {r}" for r in reasons) + "."


def is_terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
