"""The sandbox's API server is as strict as a real one, checked through the real kubectl (and raw HTTP
where kubectl hides the wire: list kinds, Status objects, watches)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from clm_operator.sandbox.cluster import Sandbox, wait_for

from tests.fixtures.sandbox import Kubectl

WIDGET_CRD: dict[str, Any] = yaml.safe_load("""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.clm.dev}
spec:
  group: test.clm.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wg], categories: [clmtest]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Ready, type: string, jsonPath: ".status.conditions[?(@.type=='Ready')].status"}
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size:
                type: integer
                minimum: 0
                maximum: 10
                x-kubernetes-validations: [{rule: "self == oldSelf", message: "size is immutable"}]
              color: {type: string, enum: [red, blue], default: red}
              label: {type: string, pattern: '^[a-z]+$'}
              resources:
                type: object
                properties:
                  gpu: {type: integer, minimum: 0}
          status:
            type: object
            properties:
              phase: {type: string}
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
""")


@pytest.fixture(scope="module")
def cluster(bare_sandbox: Sandbox) -> Sandbox:
    bare_sandbox.apply_object(WIDGET_CRD)
    return bare_sandbox


@pytest.fixture
def kc(cluster: Sandbox, bare_kubectl: Kubectl) -> Kubectl:
    return bare_kubectl


def widget(name: str, size: int = 3, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "test.clm.dev/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"size": size, **spec},
        }
    )


def get_json(kc: Kubectl, *what: str) -> Any:
    result = kc("get", *what, "-o", "json", check=True)
    return json.loads(result.stdout)


def raw(
    cluster: Sandbox, method: str, path: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        cluster.url + path, data=data, method=method, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_create_sets_uid_timestamp_generation_and_defaults(kc: Kubectl) -> None:
    kc("apply", "-f", "-", input=widget("w1"), check=True)
    obj = get_json(kc, "widget", "w1")
    meta = obj["metadata"]
    assert len(meta["uid"]) == 36 and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1 and int(meta["resourceVersion"]) > 0
    assert obj["spec"]["color"] == "red"  # the schema's default, applied by the server


def test_stale_put_is_a_409_conflict(kc: Kubectl) -> None:
    kc("apply", "-f", "-", input=widget("w1"), check=True)
    stale = get_json(kc, "widget", "w1")
    kc("patch", "widget", "w1", "--type", "merge", "-p", '{"spec":{"color":"blue"}}', check=True)
    stale["spec"]["label"] = "late"
    result = kc("replace", "-f", "-", input=json.dumps(stale))
    assert result.returncode != 0
    assert "the object has been modified" in result.stderr
    assert "label" not in get_json(kc, "widget", "w1")["spec"]


def test_generation_bumps_on_spec_changes_only(kc: Kubectl) -> None:
    kc("apply", "-f", "-", input=widget("w1"), check=True)
    first = get_json(kc, "widget", "w1")["metadata"]
    kc("label", "widget", "w1", "team=quant", check=True)
    kc(
        "patch",
        "widget",
        "w1",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        '{"status":{"phase":"Up"}}',
        check=True,
    )
    after_meta = get_json(kc, "widget", "w1")["metadata"]
    assert after_meta["generation"] == 1
    assert int(after_meta["resourceVersion"]) > int(first["resourceVersion"])
    kc("patch", "widget", "w1", "--type", "merge", "-p", '{"spec":{"color":"blue"}}', check=True)
    assert get_json(kc, "widget", "w1")["metadata"]["generation"] == 2
    # A write that changes nothing changes nothing: not the generation, not the resourceVersion.
    rv = get_json(kc, "widget", "w1")["metadata"]["resourceVersion"]
    kc("patch", "widget", "w1", "--type", "merge", "-p", '{"spec":{"color":"blue"}}', check=True)
    assert get_json(kc, "widget", "w1")["metadata"]["resourceVersion"] == rv


def test_status_subresource_semantics_both_ways(kc: Kubectl) -> None:
    kc("apply", "-f", "-", input=widget("w1"), check=True)
    kc(
        "patch",
        "widget",
        "w1",
        "--type",
        "merge",
        "-p",
        '{"spec":{"color":"blue"},"status":{"phase":"Hacked"}}',
        check=True,
    )
    obj = get_json(kc, "widget", "w1")
    assert obj["spec"]["color"] == "blue" and "status" not in obj  # .status ignored on the main resource
    kc(
        "patch",
        "widget",
        "w1",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        '{"spec":{"color":"red"},"status":{"phase":"Running"}}',
        check=True,
    )
    obj = get_json(kc, "widget", "w1")
    assert obj["status"]["phase"] == "Running" and obj["spec"]["color"] == "blue"  # only .status via /status


def test_list_kind_and_resource_version(cluster: Sandbox, kc: Kubectl, bare_namespace: str) -> None:
    kc("apply", "-f", "-", input=widget("w1"), check=True)
    code, body = raw(cluster, "GET", f"/apis/test.clm.dev/v1/namespaces/{bare_namespace}/widgets")
    assert code == 200 and body["kind"] == "WidgetList" and body["apiVersion"] == "test.clm.dev/v1"
    assert int(body["metadata"]["resourceVersion"]) >= int(body["items"][0]["metadata"]["resourceVersion"])
    code, body = raw(cluster, "GET", f"/api/v1/namespaces/{bare_namespace}/configmaps")
    assert body["kind"] == "ConfigMapList"


def test_not_found_and_already_exists_are_kubernetes_status_objects(
    cluster: Sandbox, bare_namespace: str
) -> None:
    code, body = raw(cluster, "GET", f"/apis/test.clm.dev/v1/namespaces/{bare_namespace}/widgets/nope")
    assert code == 404 and body["kind"] == "Status" and body["reason"] == "NotFound"
    assert body["message"] == 'widgets.test.clm.dev "nope" not found'
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup"}, "data": {"a": "1"}}
    assert raw(cluster, "POST", f"/api/v1/namespaces/{bare_namespace}/configmaps", cm)[0] == 201
    code, body = raw(cluster, "POST", f"/api/v1/namespaces/{bare_namespace}/configmaps", cm)
    assert code == 409 and body["reason"] == "AlreadyExists" and body["details"]["name"] == "dup"


def _configmap(name: str, labels: dict[str, str], owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def test_label_selectors(kc: Kubectl) -> None:
    items = [
        _configmap("a", {"tier": "web", "env": "prod"}),
        _configmap("b", {"tier": "db", "env": "dev"}),
        _configmap("c", {"tier": "cache"}),
    ]
    kc("apply", "-f", "-", input=yaml.safe_dump_all(items), check=True)

    def names(selector: str) -> list[str]:
        return sorted(i["metadata"]["name"] for i in get_json(kc, "configmaps", "-l", selector)["items"])

    assert names("env=prod") == ["a"]
    assert names("env!=prod") == ["b", "c"]
    assert names("tier in (web,db)") == ["a", "b"]
    assert names("tier notin (web,db)") == ["c"]
    assert names("env") == ["a", "b"]
    assert names("!env") == ["c"]
    assert names("tier in (web,db),env!=prod") == ["b"]


def test_field_selector_on_name(kc: Kubectl) -> None:
    kc("apply", "-f", "-", input=json.dumps(_configmap("one", {})), check=True)
    kc("apply", "-f", "-", input=json.dumps(_configmap("two", {})), check=True)
    listed = get_json(kc, "configmaps", "--field-selector", "metadata.name=two")["items"]
    assert [i["metadata"]["name"] for i in listed] == ["two"]


def test_owner_reference_cascade_on_delete(kc: Kubectl) -> None:
    kc("apply", "-f", "-", input=json.dumps(_configmap("owner", {})), check=True)
    owner = get_json(kc, "configmap", "owner")
    kc("apply", "-f", "-", input=json.dumps(_configmap("child", {}, owner)), check=True)
    kc("delete", "configmap", "owner", check=True)
    assert kc("get", "configmap", "child").returncode != 0
    assert "NotFound" in kc("get", "configmap", "child").stderr


def test_finalizers_hold_deletion_until_removed(kc: Kubectl) -> None:
    body = json.loads(widget("held"))
    body["metadata"]["finalizers"] = ["test.clm.dev/hold"]
    kc("apply", "-f", "-", input=json.dumps(body), check=True)
    kc("delete", "widget", "held", "--wait=false", check=True)
    obj = get_json(kc, "widget", "held")
    assert obj["metadata"]["deletionTimestamp"]
    kc("patch", "widget", "held", "--type", "merge", "-p", '{"metadata":{"finalizers":null}}', check=True)
    assert "NotFound" in kc("get", "widget", "held").stderr


def test_schema_validation_names_the_field(kc: Kubectl) -> None:
    result = kc("apply", "-f", "-", input=widget("bad", size=3, resources={"gpu": -1}))
    assert result.returncode != 0
    assert "spec.resources.gpu" in result.stderr and "greater than or equal to 0" in result.stderr
    result = kc("apply", "-f", "-", input=widget("bad", size=3, color="green"))
    assert 'spec.color: Unsupported value: "green"' in result.stderr
    result = kc(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {"apiVersion": "test.clm.dev/v1", "kind": "Widget", "metadata": {"name": "bad"}, "spec": {}}
        ),
    )
    assert "spec.size: Required value" in result.stderr
    result = kc("apply", "-f", "-", input=widget("bad", size=3, bogus=1))
    assert 'unknown field "spec.bogus"' in result.stderr  # kubectl asks for strict field validation
    assert "NotFound" in kc("get", "widget", "bad").stderr


def test_immutability_rule_rejects_a_change(kc: Kubectl) -> None:
    kc("apply", "-f", "-", input=widget("w1", size=3), check=True)
    result = kc("patch", "widget", "w1", "--type", "merge", "-p", '{"spec":{"size":4}}')
    assert result.returncode != 0 and "spec.size" in result.stderr and "size is immutable" in result.stderr
    assert get_json(kc, "widget", "w1")["spec"]["size"] == 3


def test_json_patch_and_strategic_merge_patch_rules(kc: Kubectl) -> None:
    kc("apply", "-f", "-", input=widget("w1"), check=True)
    kc(
        "patch",
        "widget",
        "w1",
        "--type",
        "json",
        "-p",
        '[{"op":"replace","path":"/spec/color","value":"blue"}]',
        check=True,
    )
    assert get_json(kc, "widget", "w1")["spec"]["color"] == "blue"
    result = kc("patch", "widget", "w1", "-p", '{"spec":{"color":"red"}}')  # strategic: not for CRs
    assert result.returncode != 0 and "strategic merge patch is not supported" in result.stderr


def test_printer_columns_short_names_and_category(cluster: Sandbox, kc: Kubectl) -> None:
    kc("apply", "-f", "-", input=widget("w1", size=7), check=True)
    kc(
        "patch",
        "wg",
        "w1",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        '{"status":{"phase":"Running","conditions":[{"type":"Other","status":"False"},'
        '{"type":"Ready","status":"True"}]}}',
        check=True,
    )
    table = kc("get", "wg", check=True).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "READY", "SIZE", "AGE"]
    assert table[1].split()[:4] == ["w1", "Running", "True", "7"]
    by_category = kc("get", "clmtest", check=True).stdout.splitlines()
    assert by_category[1].split()[:2] == ["w1", "Running"]


def test_project_crds_are_served_with_short_names_and_category(cluster: Sandbox, kc: Kubectl) -> None:
    crds = sorted((cluster.crds_dir or cluster.workdir).glob("*.yaml"))
    assert crds, "crds/ is empty: run `clm-operator crds`"
    result = kc("get", "tj,mv,mdl")
    assert result.returncode == 0, result.stderr
    result = kc("get", "clm")
    assert result.returncode == 0, result.stderr
    resources = kc("api-resources", "--api-group", "clm.dev", check=True).stdout
    for short in ("tj", "mv", "mdl"):
        assert f" {short} " in resources


def test_project_training_job_crd_validates_and_is_immutable(cluster: Sandbox, kc: Kubectl) -> None:
    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
    documents = [d for path in examples for d in yaml.safe_load_all(path.read_text()) if d]
    training_job = next(d for d in documents if d.get("kind") == "TrainingJob")
    training_job["metadata"].pop("namespace", None)
    broken = json.loads(json.dumps(training_job))
    broken["metadata"]["name"] = "broken"
    broken["spec"].setdefault("resources", {})["gpu"] = -1
    result = kc("apply", "-f", "-", input=json.dumps(broken))
    assert result.returncode != 0 and "spec.resources.gpu" in result.stderr, result.stderr
    kc("apply", "-f", "-", input=json.dumps(training_job), check=True)
    name = training_job["metadata"]["name"]
    result = kc("patch", "tj", name, "--type", "merge", "-p", '{"spec":{"algorithm":"lightgbm"}}')
    assert result.returncode != 0 and "spec is immutable" in result.stderr, result.stderr
    assert get_json(kc, "tj", name)["spec"]["algorithm"] == training_job["spec"]["algorithm"]


def test_watch_resumes_from_a_resource_version(cluster: Sandbox, bare_namespace: str) -> None:
    base = f"/api/v1/namespaces/{bare_namespace}/configmaps"
    _, created = raw(cluster, "POST", base, _configmap("w-a", {}))
    since = created["metadata"]["resourceVersion"]
    raw(cluster, "POST", base, _configmap("w-b", {}))
    raw(cluster, "DELETE", f"{base}/w-a")
    url = f"{cluster.url}{base}?watch=true&resourceVersion={since}&timeoutSeconds=1&allowWatchBookmarks=true"
    with urllib.request.urlopen(url, timeout=10) as response:
        events = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    seen = [(e["type"], e["object"]["metadata"].get("name")) for e in events if e["type"] != "BOOKMARK"]
    assert seen == [("ADDED", "w-b"), ("DELETED", "w-a")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events if e["type"] != "BOOKMARK"]
    assert rvs == sorted(rvs) and rvs[0] > int(since)


def test_describe_shows_events(cluster: Sandbox, kc: Kubectl, bare_namespace: str) -> None:
    kc("apply", "-f", "-", input=widget("w1"), check=True)
    obj = get_json(kc, "widget", "w1")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "w1."},
        "involvedObject": {
            "apiVersion": "test.clm.dev/v1",
            "kind": "Widget",
            "name": "w1",
            "namespace": bare_namespace,
            "uid": obj["metadata"]["uid"],
        },
        "reason": "ModelTrained",
        "message": "trained in 3s",
        "type": "Normal",
        "firstTimestamp": obj["metadata"]["creationTimestamp"],
        "lastTimestamp": obj["metadata"]["creationTimestamp"],
        "count": 1,
    }
    assert raw(cluster, "POST", f"/api/v1/namespaces/{bare_namespace}/events", event)[0] == 201
    described = wait_for(
        lambda: (out := kc("describe", "widget", "w1").stdout) and "ModelTrained" in out and out,
        timeout=10,
        message="the event in kubectl describe",
    )
    assert "trained in 3s" in str(described)
    events = kc("get", "events", check=True).stdout.splitlines()
    assert events[0].split() == ["NAME", "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any("ModelTrained" in line and "widget/w1" in line for line in events[1:])


def test_strategic_merge_patch_on_built_ins_merges_lists_by_key(kc: Kubectl) -> None:
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "trainer"},
        "secrets": [{"name": "first"}],
        "imagePullSecrets": [{"name": "pull"}],
    }
    kc("apply", "-f", "-", input=json.dumps(account), check=True)
    kc("patch", "serviceaccount", "trainer", "-p", '{"secrets":[{"name":"second"}]}', check=True)  # strategic
    patched = get_json(kc, "serviceaccount", "trainer")
    assert [s["name"] for s in patched["secrets"]] == ["first", "second"]
    kc(
        "patch",
        "serviceaccount",
        "trainer",
        "--type",
        "merge",
        "-p",
        '{"secrets":[{"name":"only"}]}',
        check=True,
    )
    assert [s["name"] for s in get_json(kc, "serviceaccount", "trainer")["secrets"]] == ["only"]


def test_kubectl_typed_create_commands_work(cluster: Sandbox, kc: Kubectl) -> None:
    # These kubectl commands send protobuf, not JSON.
    kc("create", "secret", "generic", "creds", "--from-literal=AWS_ACCESS_KEY_ID=abc", check=True)
    secret = get_json(kc, "secret", "creds")
    assert secret["data"] == {"AWS_ACCESS_KEY_ID": "YWJj"} and secret["type"] == "Opaque"
    kc("create", "configmap", "settings", "--from-literal=mode=fast", check=True)
    assert get_json(kc, "configmap", "settings")["data"] == {"mode": "fast"}
    name = "typed-create-ns"
    try:
        cluster.kubectl("create", "namespace", name, check=True)
        assert get_json(kc, "namespace", name)["status"]["phase"] == "Active"
    finally:
        cluster.kubectl("delete", "namespace", name)
    result = kc("create", "deployment", "web", "--image=nginx")
    assert result.returncode != 0 and "send JSON (kubectl apply -f" in result.stderr
