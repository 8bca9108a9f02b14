"""One training run: data -> features -> walk-forward -> backtest -> verdict -> artifact -> manifest.

Every failure leaves as a ``TrainerFailure`` carrying the exit code (docs/architecture.md section 5), a
CamelCase reason, the spec field at fault and a message that says how to fix it; the CLI turns it into the
termination message and one line on stderr.

Storage layout under ``artifact_prefix(output, namespace, modelName, version)``: the model file(s),
``report.html`` and ``manifest.json``, the manifest written last after every other file's sha256 has
been re-read from storage and compared. A version whose manifest exists is complete and is never
written again (exit 2). Files without a manifest are the remains of an attempt that died half-way
(a retried pod): the run goes on, and storage's put-if-absent accepts only byte-identical files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from clm_contract.metrics import BacktestMetrics, EvaluationResult
from clm_contract.promotion import evaluate
from clm_contract.storage import MANIFEST_NAME, S3Settings, Storage, StorageError, open_storage, version_key
from clm_contract.trainer_contract import (
    ArtifactRef,
    DatasetSummary,
    ExitCode,
    TrainerResult,
)
from clm_contract.training_job import Sizing, TrainingJobSpec

from clm_trainer import logging_setup
from clm_trainer.device import choose_device, thread_count
from clm_trainer.features import FeatureError, build_series
from clm_trainer.manifest import build_manifest, to_json_bytes
from clm_trainer.models import trainer_factory
from clm_trainer.models.base import DeviceChoice, ModelTrainer, SeriesData, TradingTerms
from clm_trainer.positions import (
    FLAT,
    RuleChoice,
    candidate_rules,
    choose_rule,
    hold_positions,
    volatility_sizes,
)
from clm_trainer.report import ReportInput, render_html
from clm_trainer.walkforward import (
    Fold,
    WalkForwardError,
    first_usable_row,
    inner_validation_split,
    make_folds,
    refit_rows,
)

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
    prefix = version_key(options.namespace, spec.model_name, version)

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
        info.update(rows=int(rows.size), budget=getattr(final, "budget", None))

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
            drawdown=overall.drawdown, importance=importance, device=f"{device.kind} ({device.reason})",
            costs=ev.costs, trials=ev.trials, benchmark=_benchmark_wire(ev.benchmark)))
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
                      "allowShort": spec.evaluation.allow_short,
                      "positionLayer": {
                          "spec": spec.evaluation.positions.model_dump(by_alias=True, mode="json"),
                          "perFold": [c.to_wire() if c is not None else
                                      {"chosen": "trainer outputs positions"} for c in ev.choices]},
                      "trials": ev.trials},
        backtest={**_metrics_dict(metrics), "costAnalysis": ev.costs}, conventions=conventions,
        benchmark=_benchmark_wire(ev.benchmark),
        evaluation={**evaluation.to_wire(), "criteria": spec.evaluation.criteria.to_wire()},
        artifact=artifact.to_wire(), files={**files}, durations=durations,
        device={"kind": device.kind, "reason": device.reason}, dataset_summary=summary.to_wire(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"), budget=getattr(final, "budget", None))
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
    choices: list[RuleChoice | None] = field(default_factory=list)  # per fold; None: trainer's positions
    trials: dict[str, int] = field(default_factory=dict)  # search, prior, inRun, total
    costs: dict[str, float] = field(default_factory=dict)  # gross/net Sharpe, turnover, cost drag
    benchmark: dict[str, Any] | None = None  # forward filter on planted builtin data


@dataclass(frozen=True)
class FoldPositions:
    """One fold's out-of-sample scores and positions and, for a score model, the rule chosen."""

    scores: np.ndarray  # test rows
    positions: np.ndarray  # test rows
    choice: RuleChoice | None


def position_sizes(spec: TrainingJobSpec, bar_returns: np.ndarray,
                   periods_per_year: float) -> np.ndarray | None:
    """Per-bar sizes of the position layer (None: fixed size 1)."""
    layer = spec.evaluation.positions
    if layer.sizing != Sizing.VOLATILITY:
        return None
    return volatility_sizes(bar_returns, window=layer.volatility_window, target=layer.volatility_target,
                            periods_per_year=periods_per_year)


def choose_fold_rule(spec: TrainingJobSpec, data: SeriesData, fold: Fold,
                     validation_scores_of: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     sizes: np.ndarray | None, periods_per_year: float) -> RuleChoice:
    """The position rule for ``fold``, chosen on the inner validation split of its training window.

    ``validation_scores_of(fit_rows, validation_rows)`` returns scores for the validation rows from
    something fitted on ``fit_rows`` only (a fresh model; the forward filter ignores ``fit_rows``).
    Only rows of the fold's training window are read, never its test bars (a property test checks it).
    """
    layer = spec.evaluation.positions
    try:
        fit_rows, validation_rows = inner_validation_split(
            fold.train_idx, fraction=layer.validation_fraction, embargo=spec.embargo,
            horizon=spec.target.horizon_bars)
    except WalkForwardError as exc:
        raise TrainerFailure(ExitCode.PERMANENT, "InsufficientData", str(exc), exc.field) from exc
    scores = np.asarray(validation_scores_of(fit_rows, validation_rows), dtype="float64")
    lo, hi = int(validation_rows[0]), int(validation_rows[-1]) + 1
    contiguous = np.full(hi - lo, np.nan)
    contiguous[validation_rows - lo] = scores
    candidates = candidate_rules(
        contiguous, entry=spec.evaluation.signal_threshold, entry_quantiles=layer.entry_quantiles,
        exit_threshold=layer.exit_threshold, exit_fractions=layer.exit_fractions,
        min_hold=spec.min_holding_bars)
    costs, criteria = spec.evaluation.costs, spec.evaluation.criteria
    # minTrades holds for all test bars together: scaled to the validation bars by their count (the
    # number of test bars is fixed by the spec and the data's length, never by their values)
    test_bars = max(1, (fold.test_end - fold.test_start) * spec.evaluation.folds)
    min_trades = criteria.min_trades * (hi - lo) / test_bars
    return choose_rule(candidates, contiguous, data.bar_returns[lo:hi],
                       sizes=None if sizes is None else sizes[lo:hi], allow_short=spec.evaluation.allow_short,
                       fee_bps=costs.fee_bps, slippage_bps=costs.slippage_bps,
                       periods_per_year=periods_per_year, min_win_rate=criteria.min_win_rate,
                       min_profit_factor=criteria.min_profit_factor, min_trades=min_trades)


def unselected_rule(spec: TrainingJobSpec, training_scores: np.ndarray) -> RuleChoice:
    """The rule of a fold whose training window is too short for an inner validation split: nothing is
    chosen by performance (one configuration, one trial). Entry: the spec's signalThreshold, else the
    middle entry quantile of |score| on the fold's own training rows (their distribution, not their
    returns); exit: the spec's exitThreshold, else 0 (close when the score turns)."""
    layer = spec.evaluation.positions
    quantiles = sorted(layer.entry_quantiles)
    rules = candidate_rules(training_scores, entry=spec.evaluation.signal_threshold,
                            entry_quantiles=[quantiles[len(quantiles) // 2]],
                            exit_threshold=layer.exit_threshold, exit_fractions=[0.0],
                            min_hold=spec.min_holding_bars)
    rule = rules[0] if rules else FLAT
    rule = replace(rule, label=f"{rule.label} (no validation split: too few training rows; not selected)")
    return RuleChoice(rule=rule, candidates=[], validation_bars=0)


def direct_positions(predicted: np.ndarray, allow_short: bool) -> np.ndarray:
    """A position-output trainer's predictions as positions: NaN -> 0, clipped to [-1, 1] (long-only:
    [0, 1])."""
    pos = np.nan_to_num(np.asarray(predicted, dtype="float64"), nan=0.0, posinf=1.0, neginf=-1.0)
    clipped: np.ndarray = np.clip(pos, -1.0 if allow_short else 0.0, 1.0)
    return clipped


def model_fold_positions(spec: TrainingJobSpec, data: SeriesData, fold: Fold,
                         make_model: Callable[[], ModelTrainer], sizes: np.ndarray | None,
                         periods_per_year: float) -> FoldPositions:
    """Fit the fold's model on its training rows and turn its test scores into positions.

    A trainer with ``outputs_positions = True`` (e.g. PPO) predicts positions: they bypass the rule
    selection and are only clipped; everything after (backtest, costs, metrics) is the same.
    """
    model = make_model()
    if getattr(model, "outputs_positions", False):
        model.fit(data, fold.train_idx)
        predicted = np.asarray(model.predict(data, fold.test_idx), dtype="float64")
        return FoldPositions(predicted, direct_positions(predicted, spec.evaluation.allow_short), None)

    def validation_scores(fit_rows: np.ndarray, validation_rows: np.ndarray) -> np.ndarray:
        inner = make_model()
        inner.fit(data, fit_rows)
        return np.asarray(inner.predict(data, validation_rows), dtype="float64")

    try:
        choice = choose_fold_rule(spec, data, fold, validation_scores, sizes, periods_per_year)
    except TrainerFailure as failure:
        if failure.reason != "InsufficientData":
            raise
        model.fit(data, fold.train_idx)
        choice = unselected_rule(spec, np.asarray(model.predict(data, fold.train_idx), dtype="float64"))
        log.warning("%s", logging_setup.kv(event="no_validation_split", fold=fold.number,
                                           rule=choice.rule.label, notice=failure.message))
    else:
        model.fit(data, fold.train_idx)
    predicted = np.asarray(model.predict(data, fold.test_idx), dtype="float64")
    fold_sizes = None if sizes is None else sizes[fold.test_start:fold.test_end]
    positions = hold_positions(predicted, choice.rule, allow_short=spec.evaluation.allow_short,
                               sizes=fold_sizes)
    return FoldPositions(predicted, positions, choice)


def score_fold_positions(spec: TrainingJobSpec, data: SeriesData, fold: Fold, scores: np.ndarray,
                         sizes: np.ndarray | None, periods_per_year: float) -> FoldPositions:
    """The same position layer for precomputed past-only scores (the forward-filter benchmark)."""
    try:
        choice = choose_fold_rule(spec, data, fold, lambda _fit, rows: scores[rows], sizes, periods_per_year)
    except TrainerFailure as failure:
        if failure.reason != "InsufficientData":
            raise
        choice = unselected_rule(spec, scores[fold.train_idx])
    test = scores[fold.test_start:fold.test_end]
    fold_sizes = None if sizes is None else sizes[fold.test_start:fold.test_end]
    return FoldPositions(test, hold_positions(test, choice.rule, allow_short=spec.evaluation.allow_short,
                                              sizes=fold_sizes), choice)


def trial_counts(spec: TrainingJobSpec, choices: list[RuleChoice | None]) -> dict[str, int]:
    """Trials the DSR deflates by: (search trials + earlier versions of the Model) x configurations
    evaluated in this run (the position layer's candidates; 1 for a position-output trainer)."""
    in_run = max([len(c.candidates) for c in choices if c is not None] or [1])
    search, prior = spec.evaluation.n_trials, spec.evaluation.prior_trials
    in_run = max(in_run, 1)
    return {"search": search, "prior": prior, "inRun": in_run, "total": (search + prior) * in_run}


def cost_analysis(positions: np.ndarray, gross: Any, net: Any, periods_per_year: float) -> dict[str, float]:
    """Gross and net Sharpe, annual turnover (sum |Δposition| per year, in units of capital) and the
    annual cost drag (mean gross minus mean net per-bar return, times periodsPerYear)."""
    bars = max(int(positions.size), 1)
    turnover = float(np.abs(np.diff(np.concatenate(([0.0], positions)))).sum())
    drag = float(np.mean(gross.net_returns) - np.mean(net.net_returns)) * periods_per_year
    return {"grossSharpe": float(gross.metrics.sharpe), "netSharpe": float(net.metrics.sharpe),
            "turnoverPerYear": turnover / bars * periods_per_year, "costDragPerYear": drag,
            "grossReturnPerYear": float(np.mean(gross.net_returns)) * periods_per_year}


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
            costs = spec.evaluation.costs
            # what a position-output model (PPO) learns under: the run's own costs and short rule
            data = dataclasses.replace(data, trading=TradingTerms(costs.fee_bps, costs.slippage_bps,
                                                                  spec.evaluation.allow_short))
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

    index = pd.DatetimeIndex(bars.index)
    periods = spec.evaluation.periods_per_year or bt.infer_periods_per_year(index)
    sizes = position_sizes(spec, data.bar_returns, periods)
    n_rows = data.features.shape[0]
    start = first_usable_row(data.features)
    scores = np.full(n_rows, np.nan)
    positions = np.zeros(n_rows)
    choices: list[RuleChoice | None] = []
    with step("walk_forward", durations, folds=spec.evaluation.folds, embargo=spec.embargo) as info:
        try:
            folds = make_folds(n_rows, start, data.target, folds=spec.evaluation.folds,
                               min_train_fraction=spec.evaluation.min_train_fraction,
                               embargo=spec.embargo, horizon=spec.target.horizon_bars)
        except ValueError as exc:
            field_name = getattr(exc, "field", "spec.evaluation.folds")
            raise TrainerFailure(ExitCode.PERMANENT, "InsufficientData", str(exc), field_name) from exc
        for fold in folds:
            out = model_fold_positions(spec, data, fold, make_model, sizes, periods)
            scores[fold.test_start:fold.test_end] = out.scores
            positions[fold.test_start:fold.test_end] = out.positions
            choices.append(out.choice)
            log.info("%s", logging_setup.kv(
                event="fold", fold=fold.number, of=len(folds),
                rule=out.choice.rule.label if out.choice else "trainer positions",
                validation_sharpe=max((c.sharpe for c in out.choice.candidates), default=None)
                if out.choice else None))
        info.update(oos_rows=int(np.isfinite(scores).sum()), first_test_row=folds[0].test_start)

    trials = trial_counts(spec, choices)
    with step("backtest", durations) as info:
        oos_start = folds[0].test_start
        costs = spec.evaluation.costs

        def backtest(pos: np.ndarray, lo: int, hi: int, *, gross: bool = False) -> Any:
            return bt.run_backtest(pos, data.bar_returns[lo:hi], fee_bps=0.0 if gross else costs.fee_bps,
                                   slippage_bps=0.0 if gross else costs.slippage_bps,
                                   periods_per_year=periods, n_trials=trials["total"],
                                   timestamps=index[lo:hi])

        overall = backtest(positions[oos_start:], oos_start, n_rows)
        gross_overall = backtest(positions[oos_start:], oos_start, n_rows, gross=True)
        cost_figures = cost_analysis(positions[oos_start:], gross_overall, overall, periods)
        fold_records = [_fold_record(fold, index, positions, backtest, choice)
                        for fold, choice in zip(folds, choices, strict=True)]
        metrics: BacktestMetrics = overall.metrics
        evaluation = evaluate(metrics, spec.evaluation.criteria)
        info.update(sharpe=metrics.sharpe, gross_sharpe=cost_figures["grossSharpe"], trades=metrics.trades,
                    win_rate=metrics.win_rate, profit_factor=metrics.profit_factor,
                    max_drawdown=metrics.max_drawdown, dsr=metrics.dsr, n_trials=trials["total"],
                    passed=evaluation.passed, score=evaluation.score)

    benchmark = None
    if spec.dataset.uri.startswith("builtin:"):
        with step("benchmark", durations) as info:
            benchmark = forward_filter_benchmark(spec, data, folds, index, sizes, periods, trials["total"])
            if benchmark is not None:
                info.update(filter_sharpe=benchmark["metrics"]["sharpe"])

    return WalkForwardOutcome(
        data=data, device=device, make_model=make_model, first_usable_row=start, folds=folds, scores=scores,
        positions=positions, index=index, oos_start=oos_start, periods_per_year=float(periods),
        backtest=overall, fold_records=fold_records, metrics=metrics, evaluation=evaluation,
        choices=choices, trials=trials, costs=cost_figures, benchmark=benchmark)


def forward_filter_benchmark(spec: TrainingJobSpec, data: SeriesData, folds: list[Fold],
                             index: pd.DatetimeIndex, sizes: np.ndarray | None, periods_per_year: float,
                             n_trials: int) -> dict[str, Any] | None:
    """The forward filter of a planted builtin series behind the same position layer, on the same test
    bars and costs (None for other data). ``synthetic.forward_filter_scores`` explains the filter."""
    from clm_trainer import backtest as bt  # noqa: PLC0415
    from clm_trainer.synthetic import forward_filter_scores, generate, parse_synthetic_uri  # noqa: PLC0415

    params = parse_synthetic_uri(spec.dataset.uri)
    if params.kind != "planted":
        return None
    series = generate(params, spec.dataset.timeframe)
    raw = pd.Series(forward_filter_scores(series), index=series.bars.index)
    scores = raw.reindex(index).to_numpy(dtype="float64")  # the loader may have dropped bars
    positions = np.zeros(scores.size)
    choices: list[dict[str, Any]] = []
    for fold in folds:
        out = score_fold_positions(spec, data, fold, scores, sizes, periods_per_year)
        positions[fold.test_start:fold.test_end] = out.positions
        if out.choice is not None:
            choices.append(out.choice.rule.to_wire())
    lo = folds[0].test_start
    costs = spec.evaluation.costs
    result = bt.run_backtest(positions[lo:], data.bar_returns[lo:], fee_bps=costs.fee_bps,
                             slippage_bps=costs.slippage_bps, periods_per_year=periods_per_year,
                             n_trials=n_trials, timestamps=index[lo:])
    return {"name": "forward filter (HMM, knows the generator's parameters)",
            "metrics": _metrics_dict(result.metrics), "rules": choices, "positions": positions}


def _benchmark_wire(benchmark: dict[str, Any] | None) -> dict[str, Any] | None:
    """The benchmark without its per-bar positions (the manifest stays small)."""
    if benchmark is None:
        return None
    return {k: v for k, v in benchmark.items() if k != "positions"}


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
                 backtest: Callable[[np.ndarray, int, int], Any],
                 choice: RuleChoice | None = None) -> dict[str, Any]:
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
        "positionLayer": choice.to_wire() if choice is not None else {"chosen": "trainer outputs positions"},
    }
