"""The TrainingJob decision (domain/run.py): what it decides for each state of a run, and its fixed point:
deciding again on the state it wrote decides nothing (no create, no ModelVersion change, no Event, no
counter), whatever the cluster showed."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from clm_contract.metrics import BacktestMetrics
from clm_contract.trainer_contract import ArtifactRef, DatasetSummary, TrainerResult
from clm_contract.training_job import TrainingJobSpec
from clm_operator.domain import lifecycle as lc
from clm_operator.domain import run
from clm_operator.domain.config import OperatorConfig
from clm_operator.domain.effects import EventReason, MetricOp, Subject
from clm_operator.domain.jobspec import build_job, version_of
from hypothesis import given, settings
from hypothesis import strategies as st

CONFIG = OperatorConfig.from_env({"CLM_OUTPUT_URI": "s3://clm-models/models"})
CREATED = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
UID = "5f0c-uid"


def training_job(valid: bool = True, status: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "modelName": "btc",
        "algorithm": "xgboost",
        "startupTimeoutSeconds": 300,
        "dataset": {"uri": "builtin:synthetic?kind=planted&seed=7", "symbol": "BTCUSDT"},
    }
    if not valid:
        spec["resources"] = {"gpu": -1}
    body: dict[str, Any] = {
        "apiVersion": "clm.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": "btc-run-1",
            "namespace": "trading",
            "uid": UID,
            "creationTimestamp": "2026-11-23T10:15:00Z",
            "generation": 1,
        },
        "spec": spec,
    }
    if status is not None:
        body["status"] = status
    return body


def result(complete: bool = True) -> TrainerResult:
    metrics = BacktestMetrics.model_validate(
        {
            "sharpe": 1.6,
            "sortino": 2.1,
            "max_drawdown": 0.08,
            "win_rate": 0.58,
            "profit_factor": 1.7,
            "trades": 120,
            "total_return": 0.4,
            "exposure": 0.6,
            "psr": 0.99,
            "dsr": 0.99,
            "bars": 3000,
            "periods_per_year": 8760.0,
        }
    )
    return TrainerResult(
        status="Succeeded",
        exit_code=0,
        version="v1",
        artifact=ArtifactRef(
            uri="s3://clm-models/models/trading/btc/v1/model.ubj",
            sha256="a" * 64,
            size_bytes=12,
            format="xgboost-ubj",
        )
        if complete
        else None,
        dataset=DatasetSummary(
            symbol="BTCUSDT",
            timeframe="1h",
            first_bar="2020-01-01T00:00:00Z",
            last_bar="2020-05-01T00:00:00Z",
            rows=3000,
            fingerprint="f" * 64,
        ),
        metrics=metrics,
        duration_seconds=42.0,
    )


def job(tj: dict[str, Any], state: str, owned: bool = True) -> dict[str, Any]:
    body = build_job(tj, CONFIG)
    body["metadata"]["creationTimestamp"] = "2026-11-23T10:15:01Z"
    if not owned:
        body["metadata"]["ownerReferences"] = [
            {"kind": "TrainingJob", "name": "other", "uid": "someone-else"}
        ]
    conditions = {
        "complete": [{"type": "Complete", "status": "True"}],
        "failed": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ],
    }.get(state, [])
    body["status"] = {
        "active": 1 if state == "active" else 0,
        "conditions": conditions,
        "startTime": "2026-11-23T10:15:02Z",
        **({"completionTime": "2026-11-23T10:20:00Z"} if state == "complete" else {}),
    }
    return body


def pod(state: str, message: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "running": {"state": {"running": {"startedAt": "2026-11-23T10:15:05Z"}}},
        "waiting": {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}},
        "done": {"state": {"terminated": {"exitCode": 0, "message": message}}},
    }[state]
    phase = {"running": "Running", "waiting": "Pending", "done": "Succeeded"}[state]
    return {
        "metadata": {"name": "btc-run-1-train-abcde", "creationTimestamp": "2026-11-23T10:15:02Z"},
        "status": {"phase": phase, "containerStatuses": [{"name": "trainer", **container}]},
    }


def model() -> dict[str, Any]:
    return {
        "apiVersion": "clm.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "btc", "uid": "model-uid"},
    }


def written(view: run.RunView, decision: run.RunDecision) -> run.RunView:
    """The cluster after the handler applied ``decision`` (what handlers/training_job.py writes)."""
    tj = copy.deepcopy(dict(view.training_job))
    tj["status"] = copy.deepcopy(decision.status)
    mv = copy.deepcopy(dict(decision.create_model_version or view.model_version or {})) or None
    if mv is not None:
        status: dict[str, Any] = mv.get("status") or {}
        for change in decision.model_version_changes:
            status = {**status, **lc.version_status(status, change, generation=None, now=view.now)}
        mv["status"] = status
    job_ = decision.create_job if decision.create_job is not None else view.job
    if decision.delete_job is not None:
        job_ = None
    return run.RunView(
        training_job=tj,
        now=view.now,
        model=view.model,
        model_version=mv,
        job=job_,
        pods=view.pods if job_ is not None else (),
        manifest=view.manifest,
    )


def fixed_point(view: run.RunView) -> tuple[run.RunDecision, run.RunDecision, run.RunView]:
    first = run.decide(view, CONFIG)
    after = written(view, first)
    second = run.decide(after, CONFIG)
    assert not second.transitions, second
    assert second.status == after.training_job["status"]
    return first, second, after


def test_a_new_run_creates_its_version_and_job_once() -> None:
    view = run.RunView(training_job=training_job(), now=CREATED, model=model())
    first, _, after = fixed_point(view)
    assert first.create_model_version is not None and first.create_job is not None
    assert first.create_model_version["metadata"]["ownerReferences"][0]["uid"] == "model-uid"
    assert [e.reason for e in first.events] == [EventReason.TRAINING_JOB_CREATED]
    assert first.phase == "Pending" and first.status["jobName"] == "btc-run-1-train"
    assert after.model_version is not None and after.model_version["status"]["stage"] == "Training"


def test_success_records_the_version_and_counts_once() -> None:
    tj = training_job()
    message = result().to_termination_message()
    view = run.RunView(
        training_job=tj,
        now=CREATED + timedelta(minutes=6),
        job=job(tj, "complete"),
        pods=(pod("done", message),),
    )
    first, _, after = fixed_point(view)
    assert first.phase == "Succeeded" and first.status["metrics"]["passed"] is True
    assert after.model_version is not None and after.model_version["status"]["stage"] == "Candidate"
    assert [(e.subject, e.reason) for e in first.events] == [
        (Subject.MODEL_VERSION, EventReason.MODEL_TRAINED),
        (Subject.MODEL_VERSION, EventReason.MODEL_EVALUATED),
        (Subject.TRAINING_JOB, EventReason.MODEL_TRAINED),
    ]
    observed = {c.metric: c for c in first.metrics}
    assert observed["clm_training_duration_seconds"].value == 42.0
    assert observed["clm_training_duration_seconds"].op == MetricOp.OBSERVE


def test_a_truncated_result_asks_for_the_manifest_and_uses_it() -> None:
    tj = training_job()
    view = run.RunView(
        training_job=tj,
        now=CREATED + timedelta(minutes=6),
        job=job(tj, "complete"),
        pods=(pod("done", "{not json"),),
    )
    uri = run.manifest_to_read(view, CONFIG)
    assert uri is not None and uri.endswith("/trading/btc/" + version_of(tj) + "/manifest.json")
    missing = run.decide(view, CONFIG)
    assert missing.phase == "Failed" and missing.status["reason"] == "ResultMissing"
    found = run.decide(
        run.RunView(training_job=tj, now=view.now, job=view.job, pods=view.pods, manifest=result()), CONFIG
    )
    assert found.phase == "Succeeded"


def test_an_invalid_spec_is_a_condition_not_an_error() -> None:
    first, _, _ = fixed_point(run.RunView(training_job=training_job(valid=False), now=CREATED))
    assert first.phase == "Failed" and first.create_job is None
    accepted = [c for c in first.status["conditions"] if c["type"] == "Accepted"][0]
    assert accepted["status"] == "False" and "spec.resources.gpu" in accepted["message"]
    assert [c.labels for c in first.metrics] == [
        (("model", "btc"), ("namespace", "trading"), ("reason", "InvalidSpec"))
    ]


def test_a_stuck_pod_fails_the_run_and_deletes_its_job() -> None:
    tj = training_job()
    view = run.RunView(
        training_job=tj, now=CREATED + timedelta(minutes=10), job=job(tj, "active"), pods=(pod("waiting"),)
    )
    first, _, _ = fixed_point(view)
    assert first.status["reason"] == "ImagePullBackOff" and first.delete_job == "btc-run-1-train"
    # A run marked failed whose Job survived (the operator stopped in between) deletes it then.
    lingering = run.decide(
        run.RunView(training_job=training_job(status=first.status), now=view.now, job=view.job), CONFIG
    )
    assert lingering.delete_job == "btc-run-1-train" and not lingering.events


def test_a_deleted_job_or_a_foreign_one_fails_the_run() -> None:
    deleted = run.decide(
        run.RunView(training_job=training_job(status={"jobName": "btc-run-1-train"}), now=CREATED), CONFIG
    )
    assert deleted.status["reason"] == "JobDeleted" and deleted.create_job is None
    tj = training_job()
    taken = run.decide(run.RunView(training_job=tj, now=CREATED, job=job(tj, "active", owned=False)), CONFIG)
    assert taken.status["reason"] == "JobNameTaken"


def test_a_left_over_permitted_condition_is_dropped_by_the_next_pass() -> None:
    status = {
        "conditions": [
            {
                "type": "Permitted",
                "status": "False",
                "reason": "Forbidden",
                "message": "x",
                "lastTransitionTime": "2026-11-23T10:15:00Z",
            }
        ]
    }
    tj = training_job(status=status)
    decision = run.decide(run.RunView(training_job=tj, now=CREATED, job=job(tj, "active")), CONFIG)
    assert all(c["type"] != "Permitted" for c in decision.status["conditions"])


JOB_STATES = st.sampled_from(["absent", "created", "active", "complete", "failed", "foreign"])
POD_STATES = st.sampled_from(["none", "running", "waiting", "done-ok", "done-truncated"])


@settings(max_examples=150, deadline=None)
@given(
    valid=st.booleans(),
    has_model=st.booleans(),
    mv_state=st.sampled_from(["absent", "bare", "training"]),
    job_state=JOB_STATES,
    pod_state=POD_STATES,
    job_recorded=st.booleans(),
    manifest=st.booleans(),
    minutes=st.integers(min_value=0, max_value=30),
)
def test_deciding_again_on_the_written_state_decides_nothing(
    valid: bool,
    has_model: bool,
    mv_state: str,
    job_state: str,
    pod_state: str,
    job_recorded: bool,
    manifest: bool,
    minutes: int,
) -> None:
    tj = training_job(valid=valid, status={"jobName": "btc-run-1-train"} if job_recorded else None)
    job_ = None
    if job_state != "absent" and valid:
        job_ = job(
            tj, {"created": "", "foreign": "active"}.get(job_state, job_state), owned=job_state != "foreign"
        )
    pods: tuple[dict[str, Any], ...] = ()
    if job_ is not None and pod_state != "none":
        message = result().to_termination_message() if pod_state == "done-ok" else "truncated"
        pods = (pod(pod_state.split("-")[0], message),)
    mv = None
    if mv_state != "absent" and valid:
        body = run.model_version_body(
            run.RunView(training_job=tj, now=CREATED),
            TrainingJobSpec.model_validate(tj["spec"]),
            version_of(tj),
        )
        if mv_state == "training":
            body["status"] = lc.version_status(
                {}, lc.training_started("btc-run-1"), generation=None, now=CREATED
            )
        mv = body
    view = run.RunView(
        training_job=tj,
        now=CREATED + timedelta(minutes=minutes),
        model=model() if has_model else None,
        model_version=mv,
        job=job_,
        pods=pods,
        manifest=result() if manifest else None,
    )
    first, _, _ = fixed_point(view)
    # Every failure is counted exactly when the run turns Failed, and only then.
    failures = [c for c in first.metrics if c.metric == "clm_training_job_failures_total"]
    assert len(failures) == (1 if first.phase == "Failed" else 0)
