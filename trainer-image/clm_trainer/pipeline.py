"""One training run: data -> features -> walk-forward -> backtest -> verdict -> artifact -> manifest.

Every failure leaves as a ``TrainerFailure`` carrying the exit code (DESIGN.md section 5), a CamelCase
reason, the spec field at fault and a message that says how to fix it; the CLI turns it into the
termination message and one line on stderr.

Storage layout under ``artifact_prefix(output, namespace, modelName, version)``: the model file(s),
``report.html`` and ``manifest.json``, the manifest written last after every other file's sha256 has
been re-read from storage and compared. A version whose manifest exists is complete and is never
written again (exit 2). Files without a manifest are the remains of an attempt that died half-way
(a retried pod): the run goes on, and storage's put-if-absent accepts only byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from clm_operator.api.metrics import BacktestMetrics, EvaluationResult
from clm_operator.api.trainer_contract import (
    MANIFEST_NAME,
    ArtifactRef,
    DatasetSummary,
    ExitCode,
    TrainerResult,
)
from clm_operator.api.training_job import TrainingJobSpec
from clm_operator.domain.promotion import evaluate

from clm_trainer import logging_setup
from clm_trainer.device import choose_device, thread_count
from clm_trainer.features import FeatureError, build_series
from clm_trainer.manifest import build_manifest, to_json_bytes
from clm_trainer.models import trainer_factory
from clm_trainer.models.base import DeviceChoice, ModelTrainer, SeriesData
from clm_trainer.report import ReportInput, render_html
from clm_trainer.storage import S3Settings, Storage, StorageError, open_storage
from clm_trainer.walkforward import Fold, first_usable_row, make_folds, out_of_sample_scores, refit_rows

log = logging.getLogger("clm_trainer.pipeline")

REPORT_NAME = "report.html"


class TrainerFailure(Exception):
    """A failed run, as the operator must see it: exit code, reason, field and a fix."""

    def __init__(self, exit_code: ExitCode, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.reason = reason
        self.message = message
        self.field = field


@dataclass
class RunOptions:
    output_uri: str
    namespace: str
    version: str
    s3: S3Settings | None = None


@dataclass
class RunOutcome:
    result: TrainerResult
    manifest: dict[str, Any]
    durations: dict[str, float] = field(default_factory=dict)


def canonical_spec_json(spec: TrainingJobSpec) -> str:
    return json.dumps(spec.model_dump(by_alias=True, mode="json"), sort_keys=True, separators=(",", ":"))


def default_version(spec: TrainingJobSpec) -> str:
    """Deterministic per spec, so a re-run of the same spec targets the same version."""
    return "v" + hashlib.sha256(canonical_spec_json(spec).encode()).hexdigest()[:12]


def version_key_prefix(namespace: str, model_name: str, version: str) -> str:
    """The storage keys' prefix (relative to the output root): artifact_prefix without the root."""
    return f"{namespace}/{model_name}/{version}"


def _iso(ts: Any) -> str:
    """ISO 8601 UTC with a Z, the way the data report writes its timestamps."""
    return str(pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ"))


def _fold_backtest_slice(positions: np.ndarray, start: int, end: int) -> np.ndarray:
    """The fold's positions plus one flat bar, so its last position earns its bar and the trade closes."""
    n = positions.shape[0]
    stop = min(end + 1, n)
    sliced = positions[start:stop].copy()
    if stop > end:
        sliced[-1] = 0.0
    return sliced


def _metrics_dict(metrics: BacktestMetrics) -> dict[str, Any]:
    dumped: dict[str, Any] = metrics.model_dump(by_alias=True, mode="python")
    return dumped


def run_pipeline(spec: TrainingJobSpec, options: RunOptions) -> RunOutcome:
    """Train, evaluate and store one version. Raises TrainerFailure, StorageError and friends."""
    from clm_trainer import backtest as bt  # noqa: PLC0415 - keeps `clm-trainer --help` light
    from clm_trainer.data import load_dataset  # noqa: PLC0415

    started = time.perf_counter()
    durations: dict[str, float] = {}
    step = logging_setup.step
    version = options.version
    prefix = version_key_prefix(options.namespace, spec.model_name, version)

    with step("open_storage", durations, output=options.output_uri) as info:
        try:
            storage: Storage = open_storage(options.output_uri, options.s3)
        except ValueError as exc:
            raise TrainerFailure(ExitCode.PERMANENT, "InvalidOutput", f"{exc}", "--output") from exc
        existing = storage.list_keys(prefix + "/")
        info["existing_files"] = len(existing)
        version_uri = storage.uri_for(prefix)
        if f"{prefix}/{MANIFEST_NAME}" in existing:
            raise TrainerFailure(
                ExitCode.PERMANENT, "ArtifactExists",
                f"version {version} already has files at {version_uri}; pass --version or delete them",
                "--version")
        if existing:
            log.warning("%s", logging_setup.kv(
                event="resume", message="files of an incomplete earlier attempt exist; identical files are "
                "accepted, different ones fail", files=len(existing)))

    with step("load_data", durations, uri=spec.dataset.uri) as info:
        loaded = load_dataset(spec.dataset, options.s3)
        bars = loaded.bars
        report = loaded.report
        info.update(rows=len(bars), duplicates_dropped=report.duplicates_dropped, gaps=report.gap_count)

    ev = evaluate_walk_forward(spec, bars, durations)
    data, folds, metrics, evaluation = ev.data, ev.folds, ev.metrics, ev.evaluation
    index, oos_start, periods, fold_records = ev.index, ev.oos_start, ev.periods_per_year, ev.fold_records
    n_rows, start, overall = data.features.shape[0], ev.first_usable_row, ev.backtest
    device = ev.device

    with step("refit", durations) as info:
        rows = refit_rows(n_rows, start, data.target)
        final = ev.make_model()
        final.fit(data, rows)
        importance = final.feature_importance()
        info.update(rows=int(rows.size))

    with tempfile.TemporaryDirectory(prefix="clm-artifact-") as tmp, step("upload", durations) as info:
        main_file = final.save(Path(tmp))
        files: dict[str, str] = {}
        for path in sorted(p for p in Path(tmp).rglob("*") if p.is_file()):
            key = f"{prefix}/{path.relative_to(tmp).as_posix()}"
            files[path.relative_to(tmp).as_posix()] = _put_verified(storage, key, path.read_bytes())
        main_rel = main_file.relative_to(tmp).as_posix()
        artifact = ArtifactRef(uri=storage.uri_for(f"{prefix}/{main_rel}"), sha256=files[main_rel],
                               size_bytes=main_file.stat().st_size, format=final.artifact_format)
        info.update(files=len(files), artifact=artifact.uri, size_bytes=artifact.size_bytes)

    summary = DatasetSummary(symbol=spec.dataset.symbol, timeframe=spec.dataset.timeframe,
                             first_bar=report.first_bar, last_bar=report.last_bar, rows=report.rows_kept,
                             fingerprint=report.fingerprint)
    conventions = dict(getattr(bt, "CONVENTIONS", {}))
    with step("report", durations):
        html = render_html(ReportInput(
            title=f"{spec.model_name} {version} ({spec.algorithm})",
            subtitle=f"{spec.dataset.symbol} {spec.dataset.timeframe}, {report.first_bar} .. "
                     f"{report.last_bar}, {report.rows_kept} bars; walk-forward {len(folds)} folds, "
                     f"embargo {spec.embargo} bars",
            metrics=_metrics_dict(metrics), evaluation=evaluation.to_wire(),
            criteria=spec.evaluation.criteria.to_wire(), folds=fold_records, data_report=report.to_dict(),
            conventions=conventions, timestamps=index[oos_start:], equity=overall.equity,
            drawdown=overall.drawdown, importance=importance, device=f"{device.kind} ({device.reason})"))
        files[REPORT_NAME] = _put_verified(storage, f"{prefix}/{REPORT_NAME}", html, "text/html")

    manifest_uri = storage.uri_for(f"{prefix}/{MANIFEST_NAME}")
    report_uri = storage.uri_for(f"{prefix}/{REPORT_NAME}")
    durations["total"] = round(time.perf_counter() - started, 4)
    manifest = build_manifest(
        version=version, namespace=options.namespace, spec=spec.model_dump(by_alias=True, mode="json"),
        data_report=report.to_dict(), features=data.feature_names,
        target={"kind": spec.target.kind, "horizonBars": spec.target.horizon_bars,
                "definition": "close[t+h]/close[t]-1"},
        walk_forward={"scheme": "expanding", "folds": fold_records, "embargoBars": spec.embargo,
                      "minTrainFraction": spec.evaluation.min_train_fraction, "firstUsableRow": start,
                      "oosStart": _iso(index[oos_start]), "oosBars": n_rows - oos_start,
                      "refitRows": int(rows.size), "periodsPerYear": periods,
                      "signalThreshold": spec.evaluation.signal_threshold,
                      "allowShort": spec.evaluation.allow_short},
        backtest=_metrics_dict(metrics), conventions=conventions,
        evaluation={**evaluation.to_wire(), "criteria": spec.evaluation.criteria.to_wire()},
        artifact=artifact.to_wire(), files={**files}, durations=durations,
        device={"kind": device.kind, "reason": device.reason}, dataset_summary=summary.to_wire(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"))
    with step("manifest", durations, uri=manifest_uri):
        _put_verified(storage, f"{prefix}/{MANIFEST_NAME}", to_json_bytes(manifest), "application/json")

    result = TrainerResult(
        status="Succeeded", exit_code=int(ExitCode.OK), version=version, artifact=artifact,
        manifest_uri=manifest_uri, report_uri=report_uri, dataset=summary, metrics=metrics,
        evaluation=evaluation, duration_seconds=round(time.perf_counter() - started, 3),
        message=f"trained {spec.algorithm}; criteria {'passed' if evaluation.passed else 'failed'}")
    return RunOutcome(result=result, manifest=manifest, durations=durations)


@dataclass
class WalkForwardOutcome:
    """Everything the out-of-sample evaluation produced (no storage involved)."""

    data: SeriesData
    device: DeviceChoice
    make_model: Callable[[], ModelTrainer]
    first_usable_row: int
    folds: list[Fold]
    scores: np.ndarray  # NaN outside the test blocks
    positions: np.ndarray  # 0 outside the test blocks
    index: pd.DatetimeIndex
    oos_start: int
    periods_per_year: float
    backtest: Any  # clm_trainer.backtest.BacktestResult over [oos_start, n)
    fold_records: list[dict[str, Any]]
    metrics: BacktestMetrics
    evaluation: EvaluationResult


def evaluate_walk_forward(spec: TrainingJobSpec, bars: pd.DataFrame,
                          durations: dict[str, float] | None = None) -> WalkForwardOutcome:
    """Features, walk-forward training, out-of-sample backtest and verdict for ``spec`` on ``bars``.

    The storage-free core of ``run_pipeline``: other algorithms' tests (and notebooks) call it with
    bars from ``clm_trainer.data.load_dataset``. Raises TrainerFailure for data that cannot be used.
    """
    from clm_trainer import backtest as bt  # noqa: PLC0415

    step = logging_setup.step
    with step("features", durations) as info:
        try:
            data = build_series(bars, spec.features, spec.target)
        except FeatureError as exc:
            raise TrainerFailure(ExitCode.PERMANENT, "BadData", str(exc), exc.field) from exc
        info.update(features=len(data.feature_names), rows=data.features.shape[0],
                    horizon=spec.target.horizon_bars, target=spec.target.kind)

    with step("device", durations) as info:
        device = choose_device(str(spec.algorithm), spec.resources.gpu)
        info.update(device=device.kind, reason=device.reason, threads=thread_count())
    if spec.resources.gpu > 0 and device.kind == "cpu":
        log.warning("%s", logging_setup.kv(event="gpu_unavailable", notice=device.reason))

    factory = trainer_factory(str(spec.algorithm))
    hyperparameters = spec.typed_hyperparameters()

    def make_model() -> ModelTrainer:
        return factory(hyperparameters, spec.seed, device)

    n_rows = data.features.shape[0]
    start = first_usable_row(data.features)
    with step("walk_forward", durations, folds=spec.evaluation.folds, embargo=spec.embargo) as info:
        try:
            folds = make_folds(n_rows, start, data.target, folds=spec.evaluation.folds,
                               min_train_fraction=spec.evaluation.min_train_fraction,
                               embargo=spec.embargo, horizon=spec.target.horizon_bars)
        except ValueError as exc:
            field_name = getattr(exc, "field", "spec.evaluation.folds")
            raise TrainerFailure(ExitCode.PERMANENT, "InsufficientData", str(exc), field_name) from exc
        scores = out_of_sample_scores(make_model, data, folds)
        info.update(oos_rows=int(np.isfinite(scores).sum()), first_test_row=folds[0].test_start)

    index = pd.DatetimeIndex(bars.index)
    with step("backtest", durations) as info:
        periods = spec.evaluation.periods_per_year or bt.infer_periods_per_year(index)
        positions = bt.positions_from_scores(scores, spec.evaluation.signal_threshold,
                                             spec.evaluation.allow_short)
        oos_start = folds[0].test_start
        costs = spec.evaluation.costs

        def backtest(pos: np.ndarray, lo: int, hi: int) -> Any:
            return bt.run_backtest(pos, data.bar_returns[lo:hi], fee_bps=costs.fee_bps,
                                   slippage_bps=costs.slippage_bps, periods_per_year=periods,
                                   n_trials=spec.evaluation.n_trials, timestamps=index[lo:hi])

        overall = backtest(positions[oos_start:], oos_start, n_rows)
        fold_records = [_fold_record(fold, index, positions, backtest) for fold in folds]
        metrics: BacktestMetrics = overall.metrics
        evaluation = evaluate(metrics, spec.evaluation.criteria)
        info.update(sharpe=metrics.sharpe, trades=metrics.trades, win_rate=metrics.win_rate,
                    profit_factor=metrics.profit_factor, max_drawdown=metrics.max_drawdown,
                    passed=evaluation.passed, score=evaluation.score)

    return WalkForwardOutcome(
        data=data, device=device, make_model=make_model, first_usable_row=start, folds=folds, scores=scores,
        positions=positions, index=index, oos_start=oos_start, periods_per_year=float(periods),
        backtest=overall, fold_records=fold_records, metrics=metrics, evaluation=evaluation)


def _put_verified(storage: Storage, key: str, payload: bytes, content_type: str | None = None) -> str:
    """Upload, then re-read the stored object's sha256 and compare: storage must hold what we wrote."""
    expected = hashlib.sha256(payload).hexdigest()
    storage.put_bytes(key, payload, content_type=content_type)
    stored = storage.sha256_of(key)
    if stored != expected:
        raise StorageError(f"{storage.uri_for(key)}: stored sha256 {stored} differs from the uploaded "
                           f"{expected}; the upload was corrupted, retry")
    return expected


def _fold_record(fold: Fold, index: pd.DatetimeIndex, positions: np.ndarray,
                 backtest: Callable[[np.ndarray, int, int], Any]) -> dict[str, Any]:
    stop = min(fold.test_end + 1, positions.shape[0])
    result = backtest(_fold_backtest_slice(positions, fold.test_start, fold.test_end), fold.test_start, stop)
    return {
        "fold": fold.number,
        "trainStart": _iso(index[fold.train_start]),
        "trainEnd": _iso(index[fold.train_end - 1]),
        "trainRows": int(fold.train_idx.size),
        "testStart": _iso(index[fold.test_start]),
        "testEnd": _iso(index[fold.test_end - 1]),
        "testRows": fold.test_end - fold.test_start,
        "embargoGapBars": fold.test_start - fold.train_end,
        "metrics": _metrics_dict(result.metrics),
    }
