"""The operator's Prometheus metrics (exact names are a contract with the chart's alerts and dashboard).

Every metric lives in the default prometheus-client registry and is served on ``--metrics-port``
(8080) at ``/metrics`` by runner.py. Gauges of "how many objects are in which phase/stage" are kept
from an in-memory index updated on every reconcile, so they are correct after a restart as soon as
kopf's resume handlers have seen every object once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

KINDS = ("TrainingJob", "ModelVersion", "Model")
PHASES = ("Pending", "Running", "Succeeded", "Failed")
STAGES = ("Training", "Shadow", "Candidate", "Production", "Retired", "Failed")
WEBHOOK_RESULTS = ("accepted", "unauthorized", "malformed", "ignored", "deduplicated")

RECONCILES = Counter("clm_reconciles_total", "Reconciles by kind and outcome", ["kind", "result"])
RECONCILE_ERRORS = Counter("clm_reconcile_errors_total", "Reconcile errors by kind and reason",
                           ["kind", "reason"])
RECONCILE_DURATION = Histogram("clm_reconcile_duration_seconds", "Duration of one reconcile", ["kind"],
                               buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
TRAINING_JOBS = Gauge("clm_training_jobs", "TrainingJobs by namespace and phase", ["namespace", "phase"])
TRAINING_JOB_FAILURES = Counter("clm_training_job_failures_total", "Failed training runs",
                                ["namespace", "model", "reason"])
TRAINING_DURATION = Histogram("clm_training_duration_seconds", "Wall time of successful training runs",
                              ["algorithm"],
                              buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200,
                                       86400))
MODEL_VERSIONS = Gauge("clm_model_versions", "ModelVersions by namespace, model and stage",
                       ["namespace", "model", "stage"])
PROMOTIONS = Counter("clm_promotions_total", "Changes of the production version", ["namespace", "model"])
ROLLBACKS = Counter("clm_rollbacks_total", "Rollbacks of the production version", ["namespace", "model"])
PROMOTION_SCORE = Gauge("clm_promotion_score", "Promotion score (0-100) of a ModelVersion",
                        ["namespace", "model", "version"])
LAST_SUCCESSFUL_TRAINING = Gauge("clm_last_successful_training_timestamp_seconds",
                                 "Unix time of the last successful training run of a Model",
                                 ["namespace", "model"])
PRODUCTION_VERSION_INFO = Gauge("clm_model_production_version_info", "1 for the version serving production",
                                ["namespace", "model", "version"])
MODEL_HAS_PRODUCTION = Gauge("clm_model_has_production", "1 when a Model has a production version",
                             ["namespace", "model"])
NEXT_SCHEDULE = Gauge("clm_model_next_schedule_timestamp_seconds",
                      "Unix time of a Model's next scheduled run", ["namespace", "model"])
WEBHOOK_REQUESTS = Counter("clm_webhook_requests_total", "Alertmanager webhook requests by result",
                           ["result"])

_lock = threading.Lock()
_training_jobs: dict[tuple[str, str], str] = {}
_model_versions: dict[tuple[str, str], tuple[str, str]] = {}


def _initialise() -> None:
    """Label sets that alerts divide by exist from the start (a missing series is not a zero)."""
    for kind in KINDS:
        for result in ("success", "error"):
            RECONCILES.labels(kind=kind, result=result)
        RECONCILE_DURATION.labels(kind=kind)
    for result in WEBHOOK_RESULTS:
        WEBHOOK_REQUESTS.labels(result=result)


_initialise()


@contextmanager
def reconcile(kind: str, *, count_error: bool = True) -> Iterator[None]:
    """Time one reconcile and count its outcome once.

    ``count_error=False`` on kopf's retries of the same event: the error is already counted in
    ``clm_reconciles_total``; every attempt's error still lands in ``clm_reconcile_errors_total``.
    """
    started = time.perf_counter()
    try:
        yield
    except Exception as error:
        RECONCILE_ERRORS.labels(kind=kind, reason=getattr(error, "metric_reason", type(error).__name__)).inc()
        if count_error:
            RECONCILES.labels(kind=kind, result="error").inc()
        raise
    else:
        RECONCILES.labels(kind=kind, result="success").inc()
    finally:
        RECONCILE_DURATION.labels(kind=kind).observe(time.perf_counter() - started)


def observe_training_job(namespace: str, name: str, phase: str) -> None:
    with _lock:
        _training_jobs[(namespace, name)] = phase
        _refresh_training_jobs()


def forget_training_job(namespace: str, name: str) -> None:
    with _lock:
        _training_jobs.pop((namespace, name), None)
        _refresh_training_jobs()


def _refresh_training_jobs() -> None:
    counts: dict[tuple[str, str], int] = {}
    namespaces = {ns for ns, _ in _training_jobs} | {labels[0] for labels in _gauge_keys(TRAINING_JOBS)}
    for namespace in namespaces:
        for phase in PHASES:
            counts[(namespace, phase)] = 0
    for (namespace, _), phase in _training_jobs.items():
        counts[(namespace, phase)] = counts.get((namespace, phase), 0) + 1
    for (namespace, phase), count in counts.items():
        TRAINING_JOBS.labels(namespace=namespace, phase=phase).set(count)


def observe_model_version(namespace: str, name: str, model: str, stage: str) -> None:
    with _lock:
        _model_versions[(namespace, name)] = (model, stage)
        _refresh_model_versions()


def forget_model_version(namespace: str, name: str) -> None:
    with _lock:
        _model_versions.pop((namespace, name), None)
        _refresh_model_versions()


def _refresh_model_versions() -> None:
    counts: dict[tuple[str, str, str], int] = {}
    models = {(ns, model) for (ns, _), (model, _) in _model_versions.items()}
    models |= {(labels[0], labels[1]) for labels in _gauge_keys(MODEL_VERSIONS)}
    for namespace, model in models:
        for stage in STAGES:
            counts[(namespace, model, stage)] = 0
    for (namespace, _), (model, stage) in _model_versions.items():
        counts[(namespace, model, stage)] = counts.get((namespace, model, stage), 0) + 1
    for (namespace, model, stage), count in counts.items():
        MODEL_VERSIONS.labels(namespace=namespace, model=model, stage=stage).set(count)


def _gauge_keys(gauge: Gauge) -> list[tuple[str, ...]]:
    """Label values of the series a gauge already has (so a phase that emptied drops to 0)."""
    return [tuple(sample.labels[name] for name in gauge._labelnames)
            for metric in gauge.collect() for sample in metric.samples]
