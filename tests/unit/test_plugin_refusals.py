"""``kubectl clm train`` refuses a Model the operator does not (or would not) accept: its own check of the
spec, and the operator's Accepted=False condition."""

from __future__ import annotations

from typing import Any

import pytest
from clm_operator.plugin import PluginError, refuse_unaccepted


def model(schedule: str | None = None, accepted: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"template": {"algorithm": "xgboost",
                                         "dataset": {"uri": "builtin:synthetic", "symbol": "BTCUSDT"}}}
    if schedule is not None:
        spec["schedule"] = schedule
    body: dict[str, Any] = {"metadata": {"name": "btc"}, "spec": spec}
    if accepted is not None:
        body["status"] = {"conditions": [{"type": "Accepted", "status": accepted, "reason": "InvalidSpec",
                                          "message": "spec.template.hyperparameters.maxDepht: unknown"}]}
    return body


def test_an_invalid_cron_is_refused_naming_the_field() -> None:
    with pytest.raises(PluginError, match=r"spec\.schedule") as refused:
        refuse_unaccepted(model(schedule="61 * * * *"))
    assert "'btc'" in str(refused.value) and "no run was started" in str(refused.value)


def test_a_model_the_operator_did_not_accept_is_refused() -> None:
    with pytest.raises(PluginError, match="not Accepted by the operator.*maxDepht"):
        refuse_unaccepted(model(accepted="False"))


def test_a_valid_accepted_model_passes() -> None:
    refuse_unaccepted(model(schedule="0 * * * *", accepted="True"))
    refuse_unaccepted(model())
