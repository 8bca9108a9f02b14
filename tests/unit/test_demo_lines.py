"""The demo's status lines (clm_sandbox.demo): a Failed version says which criteria failed, or why it has
no model; a failed run shows its reason."""

from __future__ import annotations

import argparse

from clm_sandbox.demo import add_arguments, run_phase, version_line


def mv(stage: str, **status: object) -> dict[str, object]:
    return {"metadata": {"name": "btc-v1", "namespace": "trading"}, "status": {"stage": stage, **status}}


def test_a_failed_version_names_its_failed_criteria() -> None:
    line = version_line(mv("Failed", evaluation={"passed": False, "score": 12.5,
                                                 "failedCriteria": ["sharpe 0.40 < 1.0", "trades 12 < 50"]}))
    assert line == "trading/btc-v1: Failed, score 12.50; failed criteria: sharpe 0.40 < 1.0; trades 12 < 50"


def test_a_version_without_a_model_says_why_its_training_failed() -> None:
    line = version_line(mv("Failed", conditions=[{"type": "Trained", "status": "False", "reason": "BadData",
                                                  "message": "no such file (field spec.dataset.uri)"}]))
    assert line == "trading/btc-v1: Failed; training failed: BadData: no such file (field spec.dataset.uri)"


def test_a_passing_version_and_a_failed_run() -> None:
    passing = version_line(mv("Production", evaluation={"score": 61.0}))
    assert passing == "trading/btc-v1: Production, score 61.00"
    assert run_phase({"metadata": {"name": "r"}, "status": {"phase": "Failed", "reason": "BadData"}}) == (
        "r=Failed(BadData)")
    assert run_phase({"metadata": {"name": "r"}}) == "r=Pending"


def test_keep_is_an_option() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--keep"]).keep and not parser.parse_args([]).keep
