"""The node agent's container environment: kubelet semantics of env, envFrom, $(VAR), fieldRef, images."""

from __future__ import annotations

from typing import Any

import pytest
from clm_sandbox.node.env import (
    ContainerConfigError,
    NodeContext,
    container_env,
    expand,
    field_path_value,
    process_env,
    resource_field_value,
    service_env,
)
from clm_sandbox.node.images import (
    DEFAULT_PATH,
    ImageMap,
    ImageMapError,
    LocalImage,
    command_line,
    key_matches,
)
from hypothesis import given
from hypothesis import strategies as st

CONTEXT = NodeContext(
    "node-a", pod_ip="127.0.0.1", host_ip="127.0.0.1", allocatable={"cpu": "4", "memory": "8Gi"}
)
OBJECTS: dict[tuple[str, str, str], dict[str, bytes]] = {
    ("Secret", "team", "s3"): {"AWS_ACCESS_KEY_ID": b"AKIA", "AWS_SECRET_ACCESS_KEY": b"s3cr\xe9t"},
    ("ConfigMap", "team", "settings"): {"LEVEL": b"debug", "bad key": b"x", "URL": b"http://s3:9000"},
}


def lookup(kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
    return OBJECTS.get((kind, namespace, name))


def pod(**container: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "trainer-abc",
            "namespace": "team",
            "uid": "u-1",
            "labels": {"app": "clm"},
            "annotations": {"clm.dev/run": "r1"},
        },
        "spec": {
            "nodeName": "node-a",
            "serviceAccountName": "clm",
            "containers": [{"name": "main", **container}],
        },
    }


def env_of(**container: Any) -> dict[str, str]:
    spec = pod(**container)
    return container_env(spec, spec["spec"]["containers"][0], lookup=lookup, services={}, context=CONTEXT)[0]


def test_values_secret_and_configmap_refs_and_envfrom_with_prefix() -> None:
    env = env_of(
        envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
        env=[
            {"name": "A", "value": "1"},
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "AWS_ACCESS_KEY_ID"}}},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "AWS_SECRET_ACCESS_KEY"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}}},
            {"name": "CM_LEVEL", "value": "overridden"},
        ],
    )
    assert env["A"] == "1" and env["KEY"] == "AKIA" and env["LEVEL"] == "debug"
    assert env["SECRET"].encode("utf-8", "surrogateescape") == b"s3cr\xe9t"  # bytes reach execve unchanged
    assert env["CM_URL"] == "http://s3:9000" and env["CM_LEVEL"] == "overridden"
    assert "CM_bad key" not in env


def test_envfrom_reports_invalid_names() -> None:
    spec = pod(envFrom=[{"configMapRef": {"name": "settings"}}])
    _, skipped = container_env(
        spec, spec["spec"]["containers"][0], lookup=lookup, services={}, context=CONTEXT
    )
    assert skipped == ["bad key"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"secretKeyRef": {"name": "nope", "key": "k"}}, 'secret "nope" not found'),
        ({"configMapKeyRef": {"name": "nope", "key": "k"}}, 'configmap "nope" not found'),
        ({"secretKeyRef": {"name": "s3", "key": "missing"}}, "couldn't find key missing in Secret team/s3"),
        (
            {"configMapKeyRef": {"name": "settings", "key": "x"}},
            "couldn't find key x in ConfigMap team/settings",
        ),
    ],
)
def test_missing_references_are_config_errors_with_the_kubelets_message(
    entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(ContainerConfigError, match=message):
        env_of(env=[{"name": "X", "valueFrom": entry}])


def test_optional_references_are_skipped() -> None:
    env = env_of(
        envFrom=[{"secretRef": {"name": "absent", "optional": True}}],
        env=[
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
            {
                "name": "Y",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "no", "optional": True}},
            },
        ],
    )
    assert "X" not in env and "Y" not in env


def test_field_refs() -> None:
    env = env_of(
        env=[
            {"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}}
            for n, p in [
                ("NAME", "metadata.name"),
                ("NS", "metadata.namespace"),
                ("UID", "metadata.uid"),
                ("NODE", "spec.nodeName"),
                ("SA", "spec.serviceAccountName"),
                ("IP", "status.podIP"),
                ("HOST", "status.hostIP"),
                ("APP", "metadata.labels['app']"),
                ("RUN", "metadata.annotations['clm.dev/run']"),
                ("NONE", "metadata.labels['none']"),
            ]
        ]
    )
    assert env == {
        "NAME": "trainer-abc",
        "NS": "team",
        "UID": "u-1",
        "NODE": "node-a",
        "SA": "clm",
        "IP": "127.0.0.1",
        "HOST": "127.0.0.1",
        "APP": "clm",
        "RUN": "r1",
        "NONE": "",
    }
    with pytest.raises(ContainerConfigError, match="unsupported fieldPath"):
        field_path_value(pod(), "metadata.labels", CONTEXT)  # the whole map: volumes only
    assert field_path_value(pod(), "metadata.labels", CONTEXT, volume=True) == 'app="clm"\n'


def test_resource_field_refs_round_up_and_default_limits_to_allocatable() -> None:
    spec = pod(resources={"requests": {"cpu": "250m", "memory": "1536Mi"}, "limits": {"cpu": "1500m"}})
    value = lambda resource, divisor="1": resource_field_value(  # noqa: E731
        spec, "main", {"resource": resource, "divisor": divisor}, CONTEXT
    )
    assert value("requests.cpu") == "1"  # ceil(0.25)
    assert value("requests.cpu", "1m") == "250"
    assert value("limits.cpu") == "2"
    assert value("requests.memory", "1Mi") == "1536"
    assert value("requests.memory", "1Gi") == "2"
    assert value("limits.memory", "1Gi") == "8"  # no limit: the node's allocatable


def test_dollar_expansion_uses_earlier_definitions_only() -> None:
    env = env_of(
        env=[
            {"name": "BASE", "value": "/data"},
            {"name": "PATHS", "value": "$(BASE)/in:$(LATER):$$(BASE)"},
            {"name": "LATER", "value": "x"},
        ]
    )
    assert env["PATHS"] == "/data/in:$(LATER):$(BASE)"


def test_kubernetes_service_variables_come_first_and_can_be_overridden() -> None:
    services = service_env("127.0.0.1", 6443)
    assert (
        services["KUBERNETES_SERVICE_HOST"] == "127.0.0.1" and services["KUBERNETES_SERVICE_PORT"] == "6443"
    )
    assert services["KUBERNETES_PORT"] == "tcp://127.0.0.1:6443"
    spec = pod(
        env=[
            {"name": "URL", "value": "https://$(KUBERNETES_SERVICE_HOST)"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": "1"},
        ]
    )
    env, _ = container_env(
        spec, spec["spec"]["containers"][0], lookup=lookup, services=services, context=CONTEXT
    )
    assert env["URL"] == "https://127.0.0.1" and env["KUBERNETES_SERVICE_PORT"] == "1"


@given(st.text(alphabet=st.characters(blacklist_characters="$")))
def test_expansion_leaves_text_without_dollars_alone(text: str) -> None:
    assert expand(text, {"A": "x"}) == text


@given(
    st.text(alphabet="ab()$", max_size=30),
    st.dictionaries(st.sampled_from(["a", "b", "ab"]), st.text(alphabet="xy", max_size=3)),
)
def test_expansion_matches_a_reference_scanner(text: str, defined: dict[str, str]) -> None:
    # An independent statement of the rules: scan left to right; "$$" -> "$"; "$(name)" -> value if defined.
    out, i = "", 0
    while i < len(text):
        if text.startswith("$$", i):
            out, i = out + "$", i + 2
        elif text.startswith("$(", i) and ")" in text[i + 2 :]:
            end = text.index(")", i + 2)
            name = text[i + 2 : end]
            out, i = out + defined.get(name, text[i : end + 1]), end + 1
        else:
            out, i = out + text[i], i + 1
    assert expand(text, defined) == out


def test_process_env_layers_image_env_under_the_containers() -> None:
    merged = process_env(
        {"PATH": "/opt/bin", "LANG": "C", "HOME": "/img"}, {"LANG": "C.UTF-8"}, hostname="pod-1", home="/"
    )
    assert merged == {"PATH": "/opt/bin", "LANG": "C.UTF-8", "HOME": "/img", "HOSTNAME": "pod-1"}
    assert process_env({}, {}, hostname="p", home="/")["PATH"] == DEFAULT_PATH


def test_command_and_args_follow_kubernetes_rules() -> None:
    image = LocalImage("img", entrypoint=("/bin/entry",), cmd=("--default",))
    assert command_line(image, None, None) == ["/bin/entry", "--default"]
    assert command_line(image, None, ["run"]) == ["/bin/entry", "run"]
    assert command_line(image, ["sh", "-c"], None) == ["sh", "-c"]
    assert command_line(image, ["sh"], ["-c", "true"]) == ["sh", "-c", "true"]
    assert command_line(image, [], []) == ["/bin/entry", "--default"]


def test_image_keys_match_at_name_boundaries_and_the_longest_wins() -> None:
    assert key_matches("clm-trainer", "clm-trainer:0.1.0") and key_matches(
        "clm-trainer", "clm-trainer@sha256:ab"
    )
    assert not key_matches("clm-trainer", "clm-trainer-evil:1")
    assert key_matches("ghcr.io/org/", "ghcr.io/org/x:1") and key_matches("busybox", "busybox")
    images = ImageMap.parse(
        {"clm": {"argv": ["a"]}, "clm-trainer": {"argv": ["b"]}, "clm-trainer:0.2": {"argv": ["c"]}}
    )
    found = images.lookup("clm-trainer:0.1.0")
    assert found is not None and found.entrypoint == ("b",)
    exact = images.lookup("clm-trainer:0.2")
    assert exact is not None and exact.entrypoint == ("c",)
    assert images.lookup("postgres:16") is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "expected a JSON object"),
        ({"x": {"argv": "sh"}}, r"\['x'\].argv: expected a list of strings"),
        ({"x": {"env": {"A": 1}}}, r"\['x'\].env"),
        ({"x": {"user": -1}}, r"\['x'\].user"),
        ({"x": {"entrypoint": []}}, r"unknown field\(s\) \['entrypoint'\]"),
    ],
)
def test_bad_image_maps_name_the_field(raw: Any, message: str) -> None:
    with pytest.raises(ImageMapError, match=message):
        ImageMap.parse(raw, "map.json")


def test_image_digest_changes_with_the_mapping() -> None:
    one = ImageMap.parse({"x": {"argv": ["a"]}}).images["x"]
    two = ImageMap.parse({"x": {"argv": ["b"]}}).images["x"]
    assert one.digest.startswith("sha256:") and one.digest != two.digest
    assert one.digest == ImageMap.parse({"x": {"argv": ["a"]}}).images["x"].digest
