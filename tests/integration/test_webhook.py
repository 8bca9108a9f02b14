"""The Alertmanager webhook served by the operator: authentication, malformed payloads, a run per
alert, de-duplication while a run with that trigger is still running, and its metrics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from clm_operator.sandbox.cluster import Sandbox, wait_for

from tests.integration.model_support import (
    WEBHOOK_TOKEN,
    NamespacedKubectl,
    get_json,
    model_manifest,
    model_sandbox,
    namespace_in,
)

pytestmark = pytest.mark.timeout(120)

# The run's pod waits for an image that does not exist: the run stays active for the dedup check.
PENDING_TEMPLATE = {"image": "registry.invalid/clm-trainer:absent", "startupTimeoutSeconds": 100_000_000}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Path, int, int]]:
    with model_sandbox(tmp_path_factory.mktemp("webhook")) as running:
        yield running


@pytest.fixture
def kubectl(env: tuple[Sandbox, Path, int, int]) -> Iterator[NamespacedKubectl]:
    with namespace_in(env[0], "hook") as k:
        manifest = yaml.safe_load(model_manifest("btc"))
        manifest["spec"]["template"].update(PENDING_TEMPLATE)
        manifest["spec"]["triggers"] = {"regime": {"enabled": False}}
        k("apply", "-f", "-", input=json.dumps(manifest), check=True)
        yield k


def post(port: int, body: bytes, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}/alertmanager", data=body, headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        return error.code, dict(json.loads(error.read() or b"{}"))


def alert(namespace: str, *, alertname: str = "ModelFeatureDrift", fingerprint: str = "f00d",
          labels: dict[str, str] | None = None) -> bytes:
    return json.dumps({
        "version": "4", "status": "firing", "receiver": "clm",
        "alerts": [{"status": "firing", "fingerprint": fingerprint, "startsAt": "2026-03-02T11:00:00Z",
                    "labels": {"alertname": alertname, "clm_model": "btc", "namespace": namespace,
                               **(labels or {})},
                    "annotations": {"summary": "PSI above 0.2 on returns"}}],
    }).encode()


def runs(kubectl: NamespacedKubectl) -> list[dict[str, Any]]:
    return list(get_json(kubectl, "trainingjobs")["items"])


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("clm_webhook_requests_total{"):
            result = line.split('result="')[1].split('"')[0]
            values[result] = float(line.rsplit(" ", 1)[1])
    return values


def test_bad_token_is_401_and_creates_nothing(env: tuple[Sandbox, Path, int, int],
                                              kubectl: NamespacedKubectl) -> None:
    port, metrics = env[2], env[3]
    before = scrape(metrics)
    for token in (None, "wrong-token", ""):
        code, body = post(port, alert(kubectl.namespace), token)
        assert code == 401 and "Bearer" in body["error"]
    assert scrape(metrics)["unauthorized"] == before["unauthorized"] + 3
    assert runs(kubectl) == []


@pytest.mark.parametrize("payload", [b"{not json", b"[]", b'{"alerts": "x"}', b'{"alerts": [1]}'])
def test_malformed_payload_is_400(env: tuple[Sandbox, Path, int, int], kubectl: NamespacedKubectl,
                                  payload: bytes) -> None:
    before = scrape(env[3])["malformed"]
    code, body = post(env[2], payload, WEBHOOK_TOKEN)
    assert code == 400 and "malformed" in body["error"]
    assert scrape(env[3])["malformed"] == before + 1
    assert runs(kubectl) == []


def test_alert_starts_one_run_and_repeats_are_deduplicated(env: tuple[Sandbox, Path, int, int],
                                                           kubectl: NamespacedKubectl) -> None:
    port, metrics = env[2], env[3]
    before = scrape(metrics)
    code, body = post(port, alert(kubectl.namespace), WEBHOOK_TOKEN)
    assert code == 200 and body["result"] == "accepted", body
    (run,) = runs(kubectl)
    assert run["spec"]["trigger"] == {"reason": "drift", "requestedBy": "alertmanager",
                                      "note": "alert ModelFeatureDrift: PSI above 0.2 on returns"}
    assert run["spec"]["modelName"] == "btc"
    assert run["metadata"]["labels"]["clm.dev/trigger"] == "drift"
    # The same alert re-sent, and a new episode of it while the run is still running: still one run.
    for fingerprint in ("f00d", "beef"):
        code, body = post(port, alert(kubectl.namespace, fingerprint=fingerprint), WEBHOOK_TOKEN)
        assert code == 200 and body["result"] == "deduplicated", body
    assert len(runs(kubectl)) == 1
    after = scrape(metrics)
    assert after["accepted"] == before["accepted"] + 1
    assert after["deduplicated"] == before["deduplicated"] + 2
    # Another trigger (derived from the alert's name) is another run.
    code, body = post(port, alert(kubectl.namespace, alertname="LiveSharpeLow", fingerprint="cafe"),
                      WEBHOOK_TOKEN)
    assert body["result"] == "accepted"
    reasons = sorted(r["spec"]["trigger"]["reason"] for r in runs(kubectl))
    assert reasons == ["drift", "performance"]
    # Once the drift run is over, a new drift alert starts a new one.
    drift = next(r for r in runs(kubectl) if r["spec"]["trigger"]["reason"] == "drift")
    kubectl("delete", "trainingjob", drift["metadata"]["name"], "--wait=true", check=True)
    wait_for(lambda: len(runs(kubectl)) == 1, timeout=20)
    code, body = post(port, alert(kubectl.namespace, fingerprint="d00d"), WEBHOOK_TOKEN)
    assert body["result"] == "accepted"


def test_alerts_that_cannot_apply_are_ignored(env: tuple[Sandbox, Path, int, int],
                                              kubectl: NamespacedKubectl) -> None:
    port = env[2]
    cases = [
        alert(kubectl.namespace, labels={"clm_trigger": "regime"}),  # disabled in spec.triggers
        alert(kubectl.namespace, labels={"clm_model": "nope"}),  # no such Model
        alert(kubectl.namespace, alertname="DiskFull"),  # no trigger derivable
        alert(kubectl.namespace, alertname="LiveSharpeLow", labels={"live_sharpe": "0.8"}),  # >= 0.5
        json.dumps({"status": "resolved", "alerts": [{"status": "resolved", "labels": {
            "alertname": "ModelFeatureDrift", "clm_model": "btc",
            "namespace": kubectl.namespace}}]}).encode(),
    ]
    for payload in cases:
        code, body = post(port, payload, WEBHOOK_TOKEN)
        assert code == 200 and body["result"] == "ignored", body
        assert body["ignored"], body
    assert runs(kubectl) == []
