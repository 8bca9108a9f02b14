"""The Alertmanager webhook served by the operator: authentication, malformed payloads, a run per
alert, de-duplication while a run with that trigger is still running, and its metrics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from clm_sandbox.cluster import Sandbox

from tests.support.cluster import (
    MODEL_TESTS,
    WEBHOOK_TOKEN,
    Kubectl,
    cluster_fixture,
    namespace_fixture,
    scrape,
    wait_for,
)
from tests.support.objects import PENDING_TEMPLATE, model_manifest

pytestmark = pytest.mark.timeout(120)

env = cluster_fixture(**MODEL_TESTS)
namespace = namespace_fixture("hook")


@pytest.fixture
def kubectl(namespace: Kubectl) -> Kubectl:
    """A namespace with the Model btc; its runs' pods wait for an image that does not exist, so a run
    stays active for the dedup check."""
    no_regime = {"triggers": {"regime": {"enabled": False}}}
    namespace.apply(model_manifest("btc", template=PENDING_TEMPLATE, extra_spec=no_regime), check=True)
    return namespace


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


def runs(kubectl: Kubectl) -> list[dict[str, Any]]:
    return list(kubectl.get_json("trainingjobs")["items"])


def webhook_requests(cluster: Sandbox) -> dict[str, float]:
    """clm_webhook_requests_total by result."""
    text = scrape(cluster)
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("clm_webhook_requests_total{"):
            result = line.split('result="')[1].split('"')[0]
            values[result] = float(line.rsplit(" ", 1)[1])
    return values


def test_bad_token_is_401_and_creates_nothing(env: Sandbox,
                                              kubectl: Kubectl) -> None:
    port = env.webhook_port
    before = webhook_requests(env)
    for token in (None, "wrong-token", ""):
        code, body = post(port, alert(kubectl.namespace), token)
        assert code == 401 and "Bearer" in body["error"]
    assert webhook_requests(env)["unauthorized"] == before["unauthorized"] + 3
    assert runs(kubectl) == []


@pytest.mark.parametrize("payload", [b"{not json", b"[]", b'{"alerts": "x"}', b'{"alerts": [1]}'])
def test_malformed_payload_is_400(env: Sandbox, kubectl: Kubectl,
                                  payload: bytes) -> None:
    before = webhook_requests(env)["malformed"]
    code, body = post(env.webhook_port, payload, WEBHOOK_TOKEN)
    assert code == 400 and "malformed" in body["error"]
    assert webhook_requests(env)["malformed"] == before + 1
    assert runs(kubectl) == []


def test_alert_starts_one_run_and_repeats_are_deduplicated(env: Sandbox,
                                                           kubectl: Kubectl) -> None:
    port = env.webhook_port
    before = webhook_requests(env)
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
    after = webhook_requests(env)
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


def test_alerts_that_cannot_apply_are_ignored(env: Sandbox,
                                              kubectl: Kubectl) -> None:
    port = env.webhook_port
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
