"""Walk-forward folds: disjoint, embargoed, purged, expanding; scores only out of sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clm_trainer.models.base import SeriesData
from clm_trainer.walkforward import (
    WalkForwardError,
    first_usable_row,
    make_folds,
    out_of_sample_scores,
    refit_rows,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def target_with_tail(n: int, horizon: int) -> np.ndarray:
    target = np.linspace(-1, 1, n)
    target[n - horizon:] = np.nan
    return target


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1500, 3000), start=st.integers(0, 60), folds=st.integers(2, 8),
       horizon=st.integers(1, 24), extra_embargo=st.integers(0, 30), fraction=st.floats(0.2, 0.6))
def test_every_fold_is_disjoint_embargoed_and_purged(n: int, start: int, folds: int, horizon: int,
                                                      extra_embargo: int, fraction: float) -> None:
    embargo = horizon + extra_embargo
    target = target_with_tail(n, horizon)
    result = make_folds(n, start, target, folds=folds, min_train_fraction=fraction, embargo=embargo,
                        horizon=horizon)
    assert len(result) == folds
    previous_train: set[int] = set()
    for k, fold in enumerate(result):
        train = fold.train_idx
        test = fold.test_idx
        assert train.size > 0 and test.size > 0
        assert np.intersect1d(train, test).size == 0
        assert train.min() >= start
        # the embargo gap: at least `embargo` bars between the last training row and the first test row
        assert fold.test_start - (train.max() + 1) >= embargo
        # no training label looks into the test block
        assert (train + horizon < fold.test_start).all()
        assert np.isfinite(target[train]).all()
        # expanding window: every earlier training row is still used
        assert previous_train <= set(train.tolist())
        previous_train = set(train.tolist())
        if k > 0:
            assert fold.test_start == result[k - 1].test_end  # contiguous test blocks
    assert result[-1].test_end == n
    first_train = n - start
    assert result[0].test_start == start + int(np.floor(first_train * fraction))


def test_small_embargo_still_purges_overlapping_labels() -> None:
    # embargo 0 with horizon 5: the purge alone keeps labels out of the test block
    folds = make_folds(1000, 0, target_with_tail(1000, 5), folds=3, min_train_fraction=0.5, embargo=0,
                       horizon=5)
    for fold in folds:
        assert fold.train_idx.max() + 5 < fold.test_start


def test_too_little_data_names_the_field() -> None:
    with pytest.raises(WalkForwardError) as info:
        make_folds(100, 0, target_with_tail(100, 1), folds=20, min_train_fraction=0.3, embargo=1, horizon=1)
    assert info.value.field == "spec.evaluation.folds"


def test_first_usable_row_skips_only_the_warm_up() -> None:
    features = np.ones((10, 3))
    features[:4, 1] = np.nan
    features[7, 2] = np.nan
    assert first_usable_row(features) == 4


def test_refit_uses_every_labelled_usable_row() -> None:
    rows = refit_rows(20, 3, target_with_tail(20, 2))
    assert rows.tolist() == list(range(3, 18))


class RecordingModel:
    """Scores = row index; remembers what it was fitted on so the test can check it."""

    algorithm = "recording"
    artifact_format = "none"
    fits: list[np.ndarray] = []

    def fit(self, data: SeriesData, train_idx: np.ndarray) -> None:
        RecordingModel.fits.append(train_idx.copy())

    def predict(self, data: SeriesData, idx: np.ndarray) -> np.ndarray:
        return idx.astype("float64")

    def save(self, directory: Path) -> Path:
        raise NotImplementedError

    def feature_importance(self) -> dict[str, float] | None:
        return None


def test_scores_exist_only_in_test_blocks() -> None:
    n = 600
    bars = pd.DataFrame({"close": np.ones(n)}, index=pd.date_range("2024", periods=n, freq="h", tz="UTC"))
    data = SeriesData(bars=bars, features=np.zeros((n, 2), dtype="float32"), feature_names=["a", "b"],
                      target=target_with_tail(n, 2), horizon_bars=2)
    folds = make_folds(n, 0, data.target, folds=4, min_train_fraction=0.4, embargo=2, horizon=2)
    RecordingModel.fits = []
    scores = out_of_sample_scores(RecordingModel, data, folds)
    first = folds[0].test_start
    assert np.isnan(scores[:first]).all()
    np.testing.assert_array_equal(scores[first:], np.arange(first, n))
    assert [f.tolist() for f in RecordingModel.fits] == [f.train_idx.tolist() for f in folds]


def test_pipeline_positions_are_flat_outside_the_test_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from clm_contract.training_job import TrainingJobSpec
    from clm_trainer.pipeline import evaluate_walk_forward

    monkeypatch.setenv("CLM_NUM_THREADS", "1")
    n = 900
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    bars = pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                         "volume": np.ones(n)}, index=pd.date_range("2024", periods=n, freq="h", tz="UTC"))
    spec = TrainingJobSpec.model_validate({
        "modelName": "m", "algorithm": "xgboost", "dataset": {"uri": "builtin:synthetic", "symbol": "S"},
        "hyperparameters": {"nEstimators": 10}, "evaluation": {"folds": 3, "embargoBars": 5},
        "target": {"horizonBars": 2}})
    out = evaluate_walk_forward(spec, bars)
    assert out.oos_start == out.folds[0].test_start
    assert not out.positions[: out.oos_start].any()
    assert np.isnan(out.scores[: out.oos_start]).all() and np.isfinite(out.scores[out.oos_start:]).all()
    assert out.metrics.bars == n - out.oos_start
    assert [r["embargoGapBars"] for r in out.fold_records] == [5, 5, 5]
