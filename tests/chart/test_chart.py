"""The Helm chart: lint, render, Kubernetes schema validation, RBAC, security, values schema."""

from __future__ import annotations

import argparse
import json
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.chart.helm import CHART, find, helm, render

KUBE_VERSION = latest_version()  # the newest Kubernetes whose schemas kubernetes-validate ships
MONITORING = "monitoring.coreos.com/v1"
EVERYTHING = ("serviceMonitor.enabled=true", "prometheusRule.enabled=true", "grafanaDashboard.enabled=true")
NAMESPACED = ("rbac.namespaced=true", "watchNamespaces={trading,research}")

# Verbs the operator may hold, per resource: anything else is a privilege it does not use.
ALLOWED = {
    ("clm.dev", "trainingjobs"): {"get", "list", "watch", "create", "patch", "delete"},
    ("clm.dev", "modelversions"): {"get", "list", "watch", "create", "patch", "delete"},
    ("clm.dev", "models"): {"get", "list", "watch", "patch"},
    ("clm.dev", "trainingjobs/status"): {"get", "patch"},
    ("clm.dev", "modelversions/status"): {"get", "patch"},
    ("clm.dev", "models/status"): {"get", "patch"},
    ("clm.dev", "trainingjobs/finalizers"): {"update"},
    ("clm.dev", "modelversions/finalizers"): {"update"},
    ("clm.dev", "models/finalizers"): {"update"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "events"): {"create"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
}


# People's access, not the operator's (tests/chart/test_user_roles.py).
USER_ROLES = {"clm-viewer", "clm-editor"}


def _rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for o in objects if o["kind"] in ("Role", "ClusterRole")
            and o["metadata"]["name"] not in USER_ROLES for rule in o["rules"]]


def _grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def _deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = find(objects, "Deployment")
    return deployment


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _deployment(objects)["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


@pytest.mark.parametrize("values", [(), NAMESPACED, EVERYTHING], ids=["default", "namespaced", "everything"])
def test_helm_lint_strict(values: tuple[str, ...]) -> None:
    flags = [flag for value in values for flag in ("--set", value)]
    result = helm("lint", "--strict", str(CHART), *flags)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    "values",
    [(), NAMESPACED, (*NAMESPACED[:1],), EVERYTHING],
    ids=["default", "namespaced", "namespaced-release-only", "everything"],
)
def test_every_rendered_object_is_valid_kubernetes(values: tuple[str, ...]) -> None:
    objects = render(*values)
    assert objects, "the chart rendered nothing"
    for obj in objects:
        if obj["apiVersion"] == MONITORING:
            continue  # prometheus-operator kinds: checked by the tests below, not in the k8s schemas
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            raise AssertionError(
                f"{obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}"
            ) from None


def test_default_install_is_cluster_wide() -> None:
    objects = render()
    assert "--all-namespaces" in _container(objects)["args"]
    assert not find(objects, "Role") and not find(objects, "RoleBinding")
    assert {o["metadata"]["name"] for o in find(objects, "ClusterRole")} == {
        "clm-clm-operator",
        "clm-clm-operator-crds",
        *USER_ROLES,
    }
    binding = find(objects, "ClusterRoleBinding", "clm-clm-operator")[0]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "clm-clm-operator", "namespace": "clm-system"}
    ]


def test_namespaced_mode_grants_roles_only_in_watched_namespaces() -> None:
    objects = render(*NAMESPACED)
    args = _container(objects)["args"]
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=trading", "--namespace=research"]
    roles = find(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["research", "trading"]
    assert sorted(b["metadata"]["namespace"] for b in find(objects, "RoleBinding")) == ["research", "trading"]
    # Cluster-wide only the CRD read access kopf needs; our kinds, Jobs and Pods only per namespace.
    (cluster_role,) = [o for o in find(objects, "ClusterRole") if o["metadata"]["name"] not in USER_ROLES]
    assert _grants(cluster_role["rules"]) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"}
    }


def test_namespaced_mode_without_list_watches_the_release_namespace() -> None:
    objects = render("rbac.namespaced=true", namespace="ml")
    assert [a for a in _container(objects)["args"] if a.startswith("--namespace")] == ["--namespace=ml"]
    assert [r["metadata"]["namespace"] for r in find(objects, "Role")] == ["ml"]


@pytest.mark.parametrize("values", [(), NAMESPACED], ids=["cluster", "namespaced"])
def test_rbac_is_least_privilege(values: tuple[str, ...]) -> None:
    rules = _rules(render(*values))
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}: {rule}"
        assert "nonResourceURLs" not in rule
    grants = _grants(rules)
    assert not [key for key in grants if key[1] in ("secrets", "configmaps", "leases", "namespaces")], grants
    for key, verbs in grants.items():
        assert key in ALLOWED, f"unexpected grant {key}"
        assert verbs <= ALLOWED[key], f"{key}: {sorted(verbs - ALLOWED[key])} not needed"
    # What the operator cannot work without.
    assert {"create", "watch"} <= grants[("batch", "jobs")]
    assert {"patch"} <= grants[("clm.dev", "trainingjobs/status")]
    assert "update" not in grants[("clm.dev", "models")], "the operator never writes a Model's spec"


def test_deployment_is_hardened() -> None:
    objects = render()
    deployment = _deployment(objects)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(objects)
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    # Writable /tmp on a read-only root filesystem.
    (tmp_mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    (tmp_volume,) = [v for v in pod["volumes"] if v["name"] == tmp_mount["name"]]
    assert "emptyDir" in tmp_volume
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081, "webhook": 8443}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"]["port"] == "health"
    assert "--metrics-port=8080" in container["args"] and "--health-port=8081" in container["args"]


def test_storage_settings_and_credentials_only_through_secret_refs() -> None:
    objects = render(
        "storage.s3.endpointUrl=http://minio.s3:9000",
        "storage.s3.pathStyle=true",
        "storage.outputUri=s3://bucket/prefix",
        "storage.s3.secretName=s3-creds",
    )
    env = {e["name"]: e for e in _container(objects)["env"]}
    assert env["CLM_OUTPUT_URI"]["value"] == "s3://bucket/prefix"
    assert env["CLM_S3_ENDPOINT_URL"]["value"] == "http://minio.s3:9000"
    assert env["CLM_S3_PATH_STYLE"]["value"] == "true"
    assert env["CLM_S3_SECRET_NAME"]["value"] == "s3-creds"
    assert env["CLM_TRAINER_IMAGE"]["value"] == "clm-trainer:0.1.0"
    for name, key in (
        ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
    ):
        assert "value" not in env[name]
        assert env[name]["valueFrom"] == {"secretKeyRef": {"name": "s3-creds", "key": key}}
    # No Secret object is rendered: credentials are never values of the chart.
    assert not find(objects, "Secret")


def test_no_secret_name_means_no_static_credentials() -> None:
    env = {e["name"] for e in _container(render("storage.s3.secretName="))["env"]}
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env


def test_webhook_token_is_a_mounted_secret_file_and_can_be_disabled() -> None:
    objects = render()
    container = _container(objects)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "--webhook-port=8443" in container["args"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "webhook-token"]
    assert mount["readOnly"] is True
    assert env["CLM_WEBHOOK_TOKEN_FILE"] == mount["mountPath"] + "/token"
    (volume,) = [
        v for v in _deployment(objects)["spec"]["template"]["spec"]["volumes"] if v["name"] == "webhook-token"
    ]
    assert volume["secret"]["secretName"] == "clm-webhook-token"
    (service,) = find(objects, "Service")
    assert {p["name"] for p in service["spec"]["ports"]} == {"metrics", "webhook"}

    disabled = render("webhook.enabled=false")
    assert "--webhook-port=0" in _container(disabled)["args"], "the operator must not serve it at all"
    assert "CLM_WEBHOOK_TOKEN_FILE" not in {e["name"] for e in _container(disabled)["env"]}
    assert {p["name"] for p in find(disabled, "Service")[0]["spec"]["ports"]} == {"metrics"}


def test_service_monitor_scrapes_the_metrics_service() -> None:
    objects = render(*EVERYTHING)
    (service,) = find(objects, "Service")
    (monitor,) = find(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["clm-system"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # The Service selects the operator's pods.
    pod_labels = _deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_optional_monitoring_objects_are_off_by_default() -> None:
    kinds = {o["kind"] for o in render()}
    assert "ServiceMonitor" not in kinds and "PrometheusRule" not in kinds and "ConfigMap" not in kinds


def test_grafana_dashboard_configmap_carries_the_dashboard() -> None:
    (configmap,) = find(render(*EVERYTHING), "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["clm-operator.json"])
    assert dashboard == json.loads((CHART / "files" / "grafana-dashboard.json").read_text())


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("rbac.namespaced=maybe", "namespaced"),
        ("storage.outputUri=ftp://bucket/models", "outputUri"),
        ("webhook.port=70000", "port"),
        ("watchNamespaces={Not_A_Namespace}", "watchNamespaces"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("replicas=3", "replicas"),
    ],
)
def test_values_schema_rejects_bad_values(value: str, field: str) -> None:
    flag = "--set-string" if value.startswith("rbac.namespaced") else "--set"
    result = helm("template", "clm", str(CHART), flag, value, check=False)
    assert result.returncode != 0, f"{value} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert field in result.stderr
    lint = helm("lint", str(CHART), flag, value, check=False)
    assert lint.returncode != 0


def test_values_file_and_schema_agree() -> None:
    """Every key of values.yaml is declared in the schema (additionalProperties is false)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], schema_node: dict[str, Any], path: str) -> None:
        properties = schema_node.get("properties", {})
        for key, value in node.items():
            assert key in properties, f"{path}{key} is not in values.schema.json"
            if isinstance(value, dict) and properties[key].get("properties"):
                walk(value, properties[key], f"{path}{key}.")

    walk(values, schema, "")


@pytest.mark.parametrize(
    "values",
    [
        (),
        NAMESPACED,
        ("webhook.enabled=false", "storage.s3.pathStyle=true", "trainer.ttlSecondsAfterFinished=600"),
    ],
    ids=["default", "namespaced", "variant"],
)
def test_the_operator_accepts_the_rendered_args_and_env(values: tuple[str, ...]) -> None:
    """The chart speaks the runner's language: its flags parse and its env is a valid OperatorConfig."""
    from clm_operator import runner
    from clm_operator.domain.config import OperatorConfig

    container = _container(render(*values))
    assert container["args"][0] == "run"
    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    args = parser.parse_args(container["args"][1:])
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    config = OperatorConfig.from_env(env)
    assert config.trainer_image == env["CLM_TRAINER_IMAGE"]
    assert config.output_uri == env["CLM_OUTPUT_URI"]
    assert config.s3_secret_name == "clm-s3-credentials"
    assert config.s3_path_style is ("storage.s3.pathStyle=true" in values)
    expected_ttl = 600 if "trainer.ttlSecondsAfterFinished=600" in values else None
    assert config.default_ttl_seconds_after_finished == expected_ttl
    assert args.metrics_port == 8080 and args.health_port == 8081
    assert config.listen_port(args.webhook_port) == (0 if "webhook.enabled=false" in values else 8443)
    assert runner.namespaces_from(args, config) == (["trading", "research"] if values == NAMESPACED else [])


def test_install_notes_name_the_watched_namespaces_and_the_secrets() -> None:
    notes = helm(
        "install",
        "clm",
        str(CHART),
        "--namespace",
        "ml",
        "--dry-run=client",
        *sum((["--set", v] for v in NAMESPACED), []),
    ).stdout.split("NOTES:", 1)[1]
    assert "trading, research" in notes
    assert "kubectl -n <namespace> create secret generic clm-s3-credentials" in notes
    assert "http://clm-clm-operator.ml.svc:8443/alertmanager" in notes
