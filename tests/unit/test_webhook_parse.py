"""Alertmanager payload parsing and token checks of the webhook (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from clm_operator.domain.config import OperatorConfig
from clm_operator.handlers.webhook import (
    MalformedPayload,
    authorized,
    parse_payload,
    trigger_from,
)


def expected_token(environ: dict[str, str]) -> str | None:
    return OperatorConfig.from_env(environ).expected_webhook_token()


def webhook_port(environ: dict[str, str], flag: int | None = None) -> int:
    return OperatorConfig.from_env(environ).listen_port(flag)


def test_firing_alerts_become_requests_and_the_rest_is_explained() -> None:
    payload = {"status": "firing", "alerts": [
        {"status": "firing", "fingerprint": "a1", "startsAt": "2026-03-02T11:00:00Z",
         "labels": {"alertname": "FeatureDrift", "clm_model": "btc", "namespace": "trading"},
         "annotations": {"summary": "PSI 0.3"}},
        {"status": "firing", "labels": {"alertname": "X", "clm_model": "btc", "clm_trigger": "regime"}},
        {"status": "resolved", "labels": {"alertname": "FeatureDrift", "clm_model": "btc"}},
        {"status": "firing", "labels": {"alertname": "FeatureDrift"}},
        {"status": "firing", "labels": {"alertname": "DiskFull", "clm_model": "btc"}},
    ]}
    requests, ignored = parse_payload(payload, default_namespace="default")
    assert [(r.namespace, r.model, r.trigger) for r in requests] == [("trading", "btc", "drift"),
                                                                     ("default", "btc", "regime")]
    assert requests[0].key == "a1@2026-03-02T11:00:00Z" and requests[0].summary == "PSI 0.3"
    assert ignored == ["FeatureDrift: not firing", "FeatureDrift: no clm_model label",
                       "DiskFull: set label clm_trigger to one of drift, performance, regime"]


def test_without_namespace_nor_default_the_alert_is_ignored() -> None:
    requests, ignored = parse_payload(
        {"alerts": [{"status": "firing", "labels": {"alertname": "Drift", "clm_model": "b"}}]}, None)
    assert requests == [] and "CLM_WEBHOOK_NAMESPACE" in ignored[0]


@pytest.mark.parametrize(("payload", "field"), [
    ([], "JSON object"), ({"alerts": {}}, "'alerts'"), ({"alerts": ["x"]}, "alerts[0]"),
    ({"alerts": [{"labels": []}]}, "alerts[0]"),
])
def test_malformed_payloads_name_the_problem(payload: object, field: str) -> None:
    with pytest.raises(MalformedPayload, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_payload(payload, None)


@pytest.mark.parametrize(("labels", "trigger"), [
    ({"alertname": "ModelDriftHigh"}, "drift"), ({"alertname": "LiveSharpeLow"}, "performance"),
    ({"alertname": "PerformanceDegraded"}, "performance"), ({"alertname": "RegimeChange"}, "regime"),
    ({"alertname": "Drift", "clm_trigger": "performance"}, "performance"),
    ({"alertname": "Drift", "clm_trigger": "evolution"}, None), ({"alertname": "Other"}, None),
])
def test_trigger_from_labels(labels: dict[str, str], trigger: str | None) -> None:
    assert trigger_from(labels) == trigger


def test_token_from_file_wins_and_comparison_is_exact(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t\n")
    assert expected_token({"CLM_WEBHOOK_TOKEN_FILE": str(secret), "CLM_WEBHOOK_TOKEN": "other"}) == "s3cr3t"
    assert expected_token({"CLM_WEBHOOK_TOKEN": "other"}) == "other"
    assert expected_token({}) is None
    assert expected_token({"CLM_WEBHOOK_TOKEN_FILE": str(tmp_path / "missing")}) is None
    assert authorized("Bearer s3cr3t", "s3cr3t")
    assert not authorized("Bearer s3cr3", "s3cr3t")
    assert not authorized("Basic s3cr3t", "s3cr3t")
    assert not authorized(None, "s3cr3t")
    assert not authorized("Bearer ", None)  # no token configured: nobody gets in


def test_webhook_port_sources() -> None:
    assert webhook_port({}) == 8443
    assert webhook_port({}, flag=9000) == 9000
    assert webhook_port({"CLM_WEBHOOK_PORT": "9100"}, flag=9000) == 9100
    with pytest.raises(ValueError, match="CLM_WEBHOOK_PORT"):
        webhook_port({"CLM_WEBHOOK_PORT": "http"})
