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

from clm_contract.model_version import Stage
from clm_contract.training_job_status import Phase
from prometheus_client import Counter, Gauge, Histogram

from clm_operator.domain.effects import MetricChange, MetricOp

KINDS = ("TrainingJob", "ModelVersion", "Model")
PHASES = tuple(str(phase) for phase in Phase)
STAGES = tuple(str(stage) for stage in Stage)
WEBHOOK_RESULTS = ("accepted", "unauthorized", "too_large", "malformed", "error", "ignored", "deduplicated")

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

# What a decision may change (domain/effects.py names them by their exposed name).
_BY_NAME: dict[str, Counter | Gauge | Histogram] = {
    "clm_training_job_failures_total": TRAINING_JOB_FAILURES,
    "clm_training_duration_seconds": TRAINING_DURATION,
    "clm_promotions_total": PROMOTIONS,
    "clm_rollbacks_total": ROLLBACKS,
    "clm_promotion_score": PROMOTION_SCORE,
    "clm_last_successful_training_timestamp_seconds": LAST_SUCCESSFUL_TRAINING,
    "clm_model_next_schedule_timestamp_seconds": NEXT_SCHEDULE,
}

_lock = threading.Lock()


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
        RECONCILE_ERRORS.labels(kind=kind, reason=error_reason(error)).inc()
        if count_error:
            RECONCILES.labels(kind=kind, result="error").inc()
        raise
    else:
        RECONCILES.labels(kind=kind, result="success").inc()
    finally:
        RECONCILE_DURATION.labels(kind=kind).observe(time.perf_counter() - started)


def error_reason(error: BaseException) -> str:
    """The ``reason`` label of an error: the API's reason for an API error (Conflict, Forbidden, ...),
    else the exception's type."""
    return str(getattr(error, "metric_reason", type(error).__name__))


class _StateIndex:
    """How many objects are in which state, as a gauge: label values are the group, then the state.

    A state (or a whole group) that emptied drops to 0 rather than vanishing: alerts divide by these.
    """

    def __init__(self, gauge: Gauge, states: tuple[str, ...]) -> None:
        self._gauge = gauge
        self._states = states
        self._items: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {}

    def observe(self, key: tuple[str, str], group: tuple[str, ...], state: str) -> None:
        with _lock:
            self._items[key] = (group, state)
            self._refresh()

    def forget(self, key: tuple[str, str]) -> None:
        with _lock:
            self._items.pop(key, None)
            self._refresh()

    def _refresh(self) -> None:
        groups = {group for group, _ in self._items.values()}
        groups |= {labels[:-1] for labels in _gauge_keys(self._gauge)}
        counts = {(*group, state): 0 for group in groups for state in self._states}
        for group, state in self._items.values():
            counts[(*group, state)] = counts.get((*group, state), 0) + 1
        for labels, count in counts.items():
            self._gauge.labels(*labels).set(count)


_training_jobs = _StateIndex(TRAINING_JOBS, PHASES)
_model_versions = _StateIndex(MODEL_VERSIONS, STAGES)


def observe_training_job(namespace: str, name: str, phase: str) -> None:
    _training_jobs.observe((namespace, name), (namespace,), str(phase))


def forget_training_job(namespace: str, name: str) -> None:
    _training_jobs.forget((namespace, name))


def observe_model_version(namespace: str, name: str, model: str, stage: str) -> None:
    _model_versions.observe((namespace, name), (namespace, model), str(stage))


def forget_model_version(namespace: str, name: str) -> None:
    _model_versions.forget((namespace, name))


def _gauge_keys(gauge: Gauge) -> list[tuple[str, ...]]:
    """Label values of the series a gauge already has (so a phase that emptied drops to 0)."""
    return [tuple(sample.labels[name] for name in gauge._labelnames)
            for metric in gauge.collect() for sample in metric.samples]


def apply(change: MetricChange) -> None:
    """Apply one metric change a decision asked for (an unknown metric name is a programming error)."""
    metric = _BY_NAME[change.metric]
    labels = dict(change.labels)
    if change.op == MetricOp.REMOVE:
        try:
            metric.remove(*(labels[name] for name in metric._labelnames))
        except KeyError:
            pass
    elif change.op == MetricOp.INC and isinstance(metric, Counter):
        metric.labels(**labels).inc(change.value)
    elif change.op == MetricOp.SET and isinstance(metric, Gauge):
        metric.labels(**labels).set(change.value)
    elif change.op == MetricOp.OBSERVE and isinstance(metric, Histogram):
        metric.labels(**labels).observe(change.value)
    else:
        raise ValueError(f"{change.op} does not apply to {change.metric}")


def set_production_version(namespace: str, model: str, production: str | None) -> None:
    """``clm_model_production_version_info`` 1 for exactly the serving version, and
    ``clm_model_has_production``."""
    for labels in _gauge_keys(PRODUCTION_VERSION_INFO):
        if labels[0] == namespace and labels[1] == model and labels[2] != production:
            PRODUCTION_VERSION_INFO.remove(*labels)
    if production:
        PRODUCTION_VERSION_INFO.labels(namespace=namespace, model=model, version=production).set(1)
    MODEL_HAS_PRODUCTION.labels(namespace=namespace, model=model).set(1 if production else 0)


def forget_model(namespace: str, model: str) -> None:
    """A deleted Model leaves no series behind."""
    set_production_version(namespace, model, None)
    for gauge in (MODEL_HAS_PRODUCTION, NEXT_SCHEDULE):
        try:
            gauge.remove(namespace, model)
        except KeyError:
            pass
