"""The operator's allow-lists (OperatorConfig, chart values ``policy``): a run asking for an image, a
toleration or a priority class the operator does not allow fails before any Job, with Accepted=False
naming the field, one Warning Event and one failure count; bind addresses come from the same config."""

from __future__ import annotations

from typing import Any

import pytest
from clm_operator.domain import run
from clm_operator.domain.config import ConfigError, OperatorConfig

from tests.unit.test_run_decision import CREATED, fixed_point, training_job

STRICT = OperatorConfig.from_env({
    "CLM_ALLOWED_IMAGE_PREFIXES": "registry.example.com/ml/, ghcr.io/clm-dev/",
    "CLM_ALLOW_RUN_TOLERATIONS": "false",
    "CLM_ALLOW_RUN_PRIORITY_CLASS": "false",
})


def asking(**spec: Any) -> dict[str, Any]:
    tj = training_job()
    tj["spec"].update(spec)
    return tj


@pytest.mark.parametrize(("spec", "field"), [
    ({"image": "docker.io/anyone/miner:latest"}, "spec.image"),
    ({"image": "registry.example.com/mlx/evil:1"}, "spec.image"),
    ({"tolerations": [{"operator": "Exists"}]}, "spec.tolerations"),
    ({"priorityClassName": "system-cluster-critical"}, "spec.priorityClassName"),
])
def test_a_refused_field_fails_the_run_before_any_job(spec: dict[str, Any], field: str) -> None:
    first = run.decide(run.RunView(training_job=asking(**spec), now=CREATED), STRICT)
    assert first.phase == "Failed" and first.create_job is None and first.create_model_version is None
    accepted = {c["type"]: c for c in first.status["conditions"]}["Accepted"]
    assert (accepted["status"], accepted["reason"]) == ("False", "NotAllowedByOperator")
    assert accepted["message"].startswith(field) and first.status["reason"] == "NotAllowedByOperator"
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "NotAllowedByOperator")]
    assert field in first.events[0].message
    assert [dict(c.labels)["reason"] for c in first.metrics] == ["NotAllowedByOperator"]
    # Decided again on what was written: nothing more (no second Event, no second count).
    after = run.RunView(training_job={**asking(**spec), "status": first.status}, now=CREATED)
    again = run.decide(after, STRICT)
    assert not again.transitions and again.status == first.status


def test_allowed_values_and_the_default_image_pass() -> None:
    tj = asking(image="ghcr.io/clm-dev/clm-trainer:0.2.0")
    first, _, _ = fixed_point(run.RunView(training_job=tj, now=CREATED))
    assert first.create_job is not None
    decision = run.decide(run.RunView(training_job=tj, now=CREATED), STRICT)
    assert decision.create_job is not None
    assert decision.create_job["spec"]["template"]["spec"]["containers"][0]["image"] == tj["spec"]["image"]
    assert run.decide(run.RunView(training_job=training_job(), now=CREATED), STRICT).create_job is not None
    # Without allow-lists (the default) every field may be set.
    anything = asking(image="docker.io/x/y:1", tolerations=[{"operator": "Exists"}], priorityClassName="hi")
    assert run.refused_fields(run.validate_training_job_spec(anything["spec"])[0], OperatorConfig()) == []


def test_every_refused_field_is_named_at_once() -> None:
    tj = asking(image="docker.io/x/y:1", tolerations=[{"operator": "Exists"}], priorityClassName="hi")
    message = run.decide(run.RunView(training_job=tj, now=CREATED), STRICT).status["message"]
    assert all(f in message for f in ("spec.image", "spec.tolerations", "spec.priorityClassName"))


def test_bind_addresses_and_bad_policy_values() -> None:
    default = OperatorConfig.from_env({})
    assert (default.bind_address, default.webhook_address()) == ("0.0.0.0", "0.0.0.0")
    loopback = OperatorConfig.from_env({"CLM_BIND_ADDRESS": "127.0.0.1"})
    assert (loopback.bind_address, loopback.webhook_address()) == ("127.0.0.1", "127.0.0.1")
    split = OperatorConfig.from_env({"CLM_BIND_ADDRESS": "127.0.0.1", "CLM_WEBHOOK_HOST": "0.0.0.0"})
    assert split.webhook_address() == "0.0.0.0"
    unset = OperatorConfig.from_env({"CLM_BIND_ADDRESS": "", "CLM_WEBHOOK_HOST": ""})
    assert unset.webhook_address() == "0.0.0.0"
    with pytest.raises(ConfigError, match="CLM_ALLOW_RUN_TOLERATIONS"):
        OperatorConfig.from_env({"CLM_ALLOW_RUN_TOLERATIONS": "maybe"})


def test_the_operators_own_trainer_image_is_always_allowed() -> None:
    tj = asking(image=STRICT.trainer_image)
    assert run.decide(run.RunView(training_job=tj, now=CREATED), STRICT).create_job is not None
