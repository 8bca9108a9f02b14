"""The chart's exposure and run policy, rendered by the real helm: the listen address, the optional
NetworkPolicy (ingress to metrics and webhook only), the operator's CPU limit, and the allow-lists the
operator parses from the rendered environment."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from tests.chart.helm import find, helm, render
from tests.chart.test_chart import CHART

KUBE_VERSION = latest_version()


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = find(objects, "Deployment")
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def env(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(objects)["env"] if "value" in e}


def test_the_default_binds_the_pod_network_and_the_container_has_a_cpu_limit() -> None:
    objects = render()
    from clm_operator.domain.config import OperatorConfig

    config = OperatorConfig.from_env(env(objects))
    assert config.bind_address == "0.0.0.0" and config.webhook_address() == "0.0.0.0"
    limits = container(objects)["resources"]["limits"]
    assert limits["cpu"] == "1" and limits["memory"] == "512Mi"
    assert find(objects, "NetworkPolicy") == []  # optional, off by default


def test_the_listen_address_is_configurable() -> None:
    from clm_operator.domain.config import OperatorConfig

    config = OperatorConfig.from_env(env(render("listen.address=127.0.0.1")))
    assert config.bind_address == "127.0.0.1" and config.webhook_address() == "127.0.0.1"


def test_the_network_policy_admits_only_metrics_and_webhook() -> None:
    objects = render("networkPolicy.enabled=true",
                     "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring")
    (policy,) = find(objects, "NetworkPolicy")
    kubernetes_validate.validate(policy, KUBE_VERSION, strict=True)
    (deployment,) = find(objects, "Deployment")
    selected = policy["spec"]["podSelector"]["matchLabels"]
    assert selected.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = policy["spec"]["ingress"]
    assert [[p["port"] for p in rule["ports"]] for rule in rules] == [["metrics"], ["webhook"]]
    named = {p["name"] for p in container(objects)["ports"]}
    assert {"metrics", "webhook"} <= named and "health" not in {p["port"] for r in rules for p in r["ports"]}
    assert rules[0]["from"] == [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    assert "from" not in rules[1]  # no peers listed: any source, but only to that port
    without_webhook = find(render("networkPolicy.enabled=true", "webhook.enabled=false"), "NetworkPolicy")
    assert [[p["port"] for p in r["ports"]] for r in without_webhook[0]["spec"]["ingress"]] == [["metrics"]]


def test_the_allow_lists_reach_the_operator() -> None:
    from clm_operator.domain.config import OperatorConfig

    default = OperatorConfig.from_env(env(render()))
    assert default.allowed_image_prefixes == () and default.allow_run_tolerations
    assert default.allow_run_priority_class
    strict = OperatorConfig.from_env(env(render(
        "policy.allowedImagePrefixes={registry.example.com/ml/,ghcr.io/clm-dev/}",
        "policy.allowRunTolerations=false", "policy.allowRunPriorityClass=false")))
    assert strict.allowed_image_prefixes == ("registry.example.com/ml/", "ghcr.io/clm-dev/")
    assert not strict.allow_run_tolerations and not strict.allow_run_priority_class


@pytest.mark.parametrize(("value", "field"), [
    ("policy.allowRunTolerations=maybe", "allowRunTolerations"),
    ("networkPolicy.enabled=yes", "enabled"),
    ("listen.address=", "address"),
])
def test_the_schema_rejects_bad_policy_and_exposure_values(value: str, field: str) -> None:
    result = helm("template", "clm", str(CHART), "--set-string" if "=yes" in value or "maybe" in value
                  else "--set", value, check=False)
    assert result.returncode != 0 and field in result.stderr, result.stderr


def test_extra_env_overrides_the_listen_address_without_a_duplicate() -> None:
    names = [e["name"] for e in container(render("extraEnv[0].name=CLM_BIND_ADDRESS",
                                                 "extraEnv[0].value=127.0.0.1"))["env"]]
    assert names.count("CLM_BIND_ADDRESS") == 1
    assert env(render("extraEnv[0].name=CLM_BIND_ADDRESS", "extraEnv[0].value=127.0.0.1"))[
        "CLM_BIND_ADDRESS"] == "127.0.0.1"
