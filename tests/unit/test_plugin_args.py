"""kubectl-clm: argument parsing and output formatting (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from clm_operator.plugin import age, build_parser, find_version, format_status, format_versions

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def mv(version: str, stage: str, sharpe: float | None, score: float | None,
       created: str) -> dict[str, object]:
    status: dict[str, object] = {"stage": stage}
    if sharpe is not None:
        status["metrics"] = {"backtest": {"sharpe": sharpe}}
    if score is not None:
        status["evaluation"] = {"passed": True, "score": score}
    return {"metadata": {"name": f"btc-{version}", "creationTimestamp": created},
            "spec": {"modelName": "btc", "version": version}, "status": status}


@pytest.mark.parametrize("argv", [
    ["-n", "ns1", "status", "btc"],
    ["status", "btc", "-n", "ns1"],
    ["status", "btc", "--namespace", "ns1"],
])
def test_namespace_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.command, args.model, args.namespace) == ("status", "btc", "ns1")


def test_kubeconfig_context_and_promote_arguments() -> None:
    args = build_parser().parse_args(["--kubeconfig", "/tmp/k", "promote", "btc", "v1", "--context", "c1"])
    assert (args.kubeconfig, args.context, args.model, args.version) == ("/tmp/k", "c1", "btc", "v1")
    assert args.namespace is None


def test_train_note_and_rollback() -> None:
    assert build_parser().parse_args(["train", "btc", "--note", "new data"]).note == "new data"
    assert build_parser().parse_args(["rollback", "btc"]).command == "rollback"


@pytest.mark.parametrize("argv", [[], ["promote", "btc"], ["frobnicate", "btc"], ["status"]])
def test_usage_errors_exit_non_zero(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "usage: kubectl clm" in capsys.readouterr().err


def test_age_like_kubectl() -> None:
    assert age("2026-03-02T11:59:15Z", NOW) == "45s"
    assert age("2026-03-02T11:48:00Z", NOW) == "12m"
    assert age("2026-03-02T07:00:00Z", NOW) == "5h"
    assert age("2026-02-27T12:00:00Z", NOW) == "3d"
    assert age(None, NOW) == "<unknown>"


def test_versions_table_newest_first_with_missing_metrics() -> None:
    out = format_versions([mv("v20260301-000000-aaaaa", "Retired", 1.234, 61.5, "2026-03-01T00:00:00Z"),
                           mv("v20260302-000000-bbbbb", "Training", None, None, "2026-03-02T11:00:00Z")], NOW)
    lines = out.splitlines()
    assert lines[0].split() == ["VERSION", "STAGE", "SHARPE", "SCORE", "AGE"]
    assert lines[1].split() == ["v20260302-000000-bbbbb", "Training", "-", "-", "1h"]
    assert lines[2].split() == ["v20260301-000000-aaaaa", "Retired", "1.23", "61.50", "1d"]


def test_status_shows_production_candidates_and_history() -> None:
    model = {
        "metadata": {"name": "btc", "namespace": "ns1"},
        "spec": {"promotion": {"policy": "AutoProduction"}, "productionVersion": "v1",
                 "schedule": "0 3 * * 1"},
        "status": {"productionVersion": "v1", "previousProductionVersion": "v2", "candidateVersion": "v3",
                   "nextScheduleTime": "2026-03-09T03:00:00Z",
                   "conditions": [{"type": "Ready", "status": "True", "reason": "ProductionServing",
                                   "message": "version v1 serves production"}],
                   "history": [{"from": None, "to": "v2", "time": "2026-03-01T00:00:00Z",
                                "reason": "Promoted", "by": "policy AutoProduction"},
                               {"from": "v2", "to": "v1", "time": "2026-03-02T00:00:00Z",
                                "reason": "RolledBack", "by": "spec.productionVersion"}]},
    }
    out = format_status(model, [mv("v3", "Candidate", 1.5, 70.0, "2026-03-02T00:00:00Z")], NOW)
    assert "Production:  v1" in out and "Previous:    v2" in out and "Pinned:      v1" in out
    assert "Policy:      AutoProduction" in out
    history = out.split("History:")[1].splitlines()
    assert history[1].split()[:4] == ["TIME", "FROM", "TO", "REASON"]
    assert history[2].split()[1:4] == ["-", "v2", "Promoted"]
    assert history[3].split()[1:4] == ["v2", "v1", "RolledBack"]
    assert "Candidates:" in out and "v3" in out.split("Candidates:")[1]


def test_find_version_by_version_or_name() -> None:
    items = [mv("v1", "Candidate", 1.0, 50.0, "2026-03-02T00:00:00Z")]
    assert find_version(items, "v1") is items[0]
    assert find_version(items, "btc-v1") is items[0]
    assert find_version(items, "v2") is None
