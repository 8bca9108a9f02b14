"""The position layer (clm_trainer.positions), its per-fold selection in the pipeline, the forward-filter
benchmark of the planted data, and the position-output bypass (PPO's contract)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clm_contract.training_job import TrainingJobSpec
from clm_trainer.features import build_series
from clm_trainer.models.base import SeriesData
from clm_trainer.pipeline import choose_fold_rule, direct_positions, model_fold_positions, trial_counts
from clm_trainer.positions import (
    FLAT,
    PositionRule,
    candidate_rules,
    choose_rule,
    hold_positions,
    volatility_sizes,
)
from clm_trainer.synthetic import forward_filter, forward_filter_scores, generate, parse_synthetic_uri
from clm_trainer.walkforward import first_usable_row, inner_validation_split, make_folds
from hypothesis import given, settings
from hypothesis import strategies as st


def test_entry_hysteresis_and_minimum_holding() -> None:
    s = np.array([0.0, 0.3, 0.1, -0.05, 0.2, -0.1, -0.3, -0.3, 0.0, 0.25])
    rule = PositionRule(entry=0.2, exit=0.0, min_hold=1)
    # opens above 0.2, stays while the score is >= exit 0, closes below it, flips only beyond -entry
    assert hold_positions(s, rule, allow_short=True).tolist() == [0, 1, 1, 0, 0, 0, -1, -1, -1, 1]
    flip_only = PositionRule(entry=0.2, exit=-0.2, min_hold=1)
    assert hold_positions(s, flip_only, allow_short=True).tolist() == [0, 1, 1, 1, 1, 1, -1, -1, -1, 1]
    held = PositionRule(entry=0.2, exit=0.0, min_hold=3)
    assert hold_positions(s, held, allow_short=True).tolist() == [0, 1, 1, 1, 1, 0, -1, -1, -1, 1]
    assert hold_positions(s, rule, allow_short=False).tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0, 1]
    assert not hold_positions(s, FLAT, allow_short=True).any()
    assert hold_positions(np.array([np.nan, 0.5]), rule, allow_short=True).tolist() == [0, 1]


def test_sizes_are_set_at_entry_and_held_for_the_trade() -> None:
    s = np.array([0.5, 0.5, 0.5, -0.5, -0.5])
    sizes = np.array([0.2, 0.9, 0.9, 0.4, 0.7])
    pos = hold_positions(s, PositionRule(0.1, 0.0, 1), allow_short=True, sizes=sizes)
    assert pos.tolist() == [0.2, 0.2, 0.2, -0.4, -0.4]


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="exit threshold"):
        PositionRule(entry=0.1, exit=0.2, min_hold=1)
    with pytest.raises(ValueError, match="min_hold"):
        PositionRule(entry=0.1, exit=0.0, min_hold=0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(50, 400))
def test_volatility_sizes_are_past_only_and_hit_the_target(seed: int, cut: int) -> None:
    rng = np.random.default_rng(seed)
    r = rng.normal(0, 0.01, 500)
    sizes = volatility_sizes(r, window=24, target=0.1, periods_per_year=8760)
    changed = r.copy()
    changed[cut:] = rng.normal(0, 0.05, 500 - cut)
    again = volatility_sizes(changed, window=24, target=0.1, periods_per_year=8760)
    np.testing.assert_array_equal(sizes[:cut], again[:cut])
    assert (sizes[:23] == 1).all() and ((sizes > 0) & (sizes <= 1)).all()
    expected = 0.1 / (np.std(r[100:124], ddof=1) * math.sqrt(8760))
    assert sizes[123] == pytest.approx(min(1.0, expected))


def test_candidates_are_quantiles_of_the_validation_scores_and_fixed_values_stay_fixed() -> None:
    scores = np.linspace(-1, 1, 201)
    rules = candidate_rules(scores, entry=None, entry_quantiles=[0.5, 0.9], exit_threshold=None,
                            exit_fractions=[0.0, -1.0], min_hold=24)
    assert [(round(r.entry, 6), round(r.exit, 6), r.min_hold) for r in rules] == [
        (0.5, 0.0, 24), (0.5, -0.5, 24), (0.9, 0.0, 24), (0.9, -0.9, 24)]
    fixed = candidate_rules(scores, entry=0.1, entry_quantiles=[0.5], exit_threshold=0.05,
                            exit_fractions=[0.0], min_hold=1)
    assert [(r.entry, r.exit) for r in fixed] == [(0.1, 0.05)]


def test_choose_rule_stays_flat_when_no_candidate_beats_zero_and_counts_every_candidate() -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(0, 0.01, 2000)
    anti = -np.roll(r, -1)  # a score that is exactly wrong about the next bar
    cands = candidate_rules(anti, entry=None, entry_quantiles=[0.5, 0.75], exit_threshold=None,
                            exit_fractions=[0.0], min_hold=1)
    choice = choose_rule(cands, anti, r, sizes=None, allow_short=True, fee_bps=0, slippage_bps=0,
                         periods_per_year=8760)
    assert choice.rule == FLAT and len(choice.candidates) == 2
    assert all(c.sharpe < 0 for c in choice.candidates)
    good = choose_rule(cands, -anti, r, sizes=None, allow_short=True, fee_bps=0, slippage_bps=0,
                       periods_per_year=8760)
    assert good.rule in cands and good.rule.trades
    assert good.to_wire()["chosen"] == good.rule.to_wire()


def test_inner_split_is_purged_and_inside_the_training_rows() -> None:
    train = np.arange(100, 1100)
    fit, val = inner_validation_split(train, fraction=0.3, embargo=24, horizon=24)
    assert val[0] == 800 and val[-1] == 1099
    assert fit.max() + 24 < val[0] and fit.max() < val[0] - 24 and fit.min() == 100


# --- per-fold selection never sees the fold's test bars -------------------------------------------


class MomentumStub:
    """A deterministic 'model': its score is the 20-bar momentum feature; fitting records the rows."""

    algorithm = "stub"
    artifact_format = "none"
    outputs_positions = False

    def __init__(self) -> None:
        self.fitted: np.ndarray | None = None

    def fit(self, data: SeriesData, train_idx: np.ndarray) -> None:
        self.fitted = train_idx.copy()
        self.sign = 1.0 if float(np.nanmean(data.target[train_idx])) >= -1 else -1.0

    def predict(self, data: SeriesData, idx: np.ndarray) -> np.ndarray:
        column = data.feature_names.index("mom_20")
        out: np.ndarray = self.sign * data.features[idx, column].astype("float64")
        return out

    def save(self, directory: Path) -> Path:
        raise NotImplementedError

    def feature_importance(self) -> dict[str, float] | None:
        return None


def _spec(**evaluation: object) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({
        "modelName": "m", "algorithm": "xgboost",
        "dataset": {"uri": "builtin:synthetic?kind=planted&bars=3000", "symbol": "S"},
        "features": {"windows": [5, 20], "returnLags": [1, 2]}, "evaluation": {"folds": 3, **evaluation}})


def _setup(close: np.ndarray, spec: TrainingJobSpec) -> tuple[SeriesData, list]:  # type: ignore[type-arg]
    n = close.size
    bars = pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                         "volume": np.ones(n)}, index=pd.date_range("2024", periods=n, freq="h", tz="UTC"))
    data = build_series(bars, spec.features, spec.target)
    folds = make_folds(n, first_usable_row(data.features), data.target, folds=3, min_train_fraction=0.4,
                       embargo=spec.embargo, horizon=spec.target.horizon_bars)
    return data, folds


BASE = generate(parse_synthetic_uri(
    "builtin:synthetic?kind=planted&seed=4&bars=3000&strength=0.2&regime=200"))


@settings(max_examples=15, deadline=None)
@given(fold_number=st.integers(0, 2), seed=st.integers(0, 2**31 - 1), scale=st.floats(0.002, 0.05))
def test_changing_a_folds_test_bars_never_changes_the_parameters_chosen_for_it(
        fold_number: int, seed: int, scale: float) -> None:
    spec = _spec()
    close = BASE.bars["close"].to_numpy()
    data, folds = _setup(close, spec)
    fold = folds[fold_number]
    sizes = volatility_sizes(data.bar_returns, window=168, target=0.1, periods_per_year=8760)

    def chosen(d: SeriesData, s: np.ndarray) -> object:
        def scores_of(fit_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
            model = MomentumStub()
            model.fit(d, fit_rows)
            return model.predict(d, rows)
        return choose_fold_rule(spec, d, fold, scores_of, s, 8760.0)

    before = chosen(data, sizes)
    # rewrite every bar from the fold's first test bar on (its test bars and everything after)
    rng = np.random.default_rng(seed)
    changed = close.copy()
    tail = changed.size - fold.test_start
    changed[fold.test_start:] = close[fold.test_start - 1] * np.exp(np.cumsum(rng.normal(0, scale, tail)))
    data2, folds2 = _setup(changed, spec)
    assert folds2[fold_number].test_start == fold.test_start
    sizes2 = volatility_sizes(data2.bar_returns, window=168, target=0.1, periods_per_year=8760)
    after = chosen(data2, sizes2)
    assert after == before


def test_trials_count_every_candidate_and_every_earlier_attempt() -> None:
    spec = _spec(nTrials=2, priorTrials=3)
    data, folds = _setup(BASE.bars["close"].to_numpy(), spec)
    out = model_fold_positions(spec, data, folds[0], MomentumStub, None, 8760.0)
    assert out.choice is not None and len(out.choice.candidates) == 9  # 3 entry quantiles x 3 exits
    assert trial_counts(spec, [out.choice]) == {"search": 2, "prior": 3, "inRun": 9, "total": 45}
    fixed = _spec(signalThreshold=0.01, positions={"exitThreshold": 0.0})
    assert trial_counts(fixed, [model_fold_positions(fixed, data, folds[0], MomentumStub, None,
                                                     8760.0).choice]) == {
        "search": 1, "prior": 0, "inRun": 1, "total": 1}


class PositionStub(MomentumStub):
    """A position-output trainer (as PPO): predict() returns target positions, here out of range too."""

    outputs_positions = True

    def predict(self, data: SeriesData, idx: np.ndarray) -> np.ndarray:
        return np.where(idx % 3 == 0, 1.7, np.where(idx % 3 == 1, -0.4, np.nan))


@pytest.mark.parametrize("allow_short", [True, False])
def test_position_output_trainers_bypass_the_layer_but_are_clipped(allow_short: bool) -> None:
    spec = _spec(allowShort=allow_short)
    data, folds = _setup(BASE.bars["close"].to_numpy(), spec)
    out = model_fold_positions(spec, data, folds[1], PositionStub, None, 8760.0)
    idx = folds[1].test_idx
    expected = np.where(idx % 3 == 0, 1.0, np.where(idx % 3 == 1, -0.4 if allow_short else 0.0, 0.0))
    assert out.choice is None
    np.testing.assert_array_equal(out.positions, expected)
    assert trial_counts(spec, [None]) == {"search": 1, "prior": 0, "inRun": 1, "total": 1}
    assert direct_positions(np.array([np.inf, -np.inf]), True).tolist() == [1.0, -1.0]


# --- the forward filter: the planted data's achievable benchmark ----------------------------------


def test_forward_filter_is_past_only_and_calibrated() -> None:
    params = parse_synthetic_uri("builtin:synthetic?kind=planted&seed=2&bars=20000")
    series = generate(params)
    assert series.log_returns is not None and series.regime is not None
    beliefs = forward_filter(series.log_returns, params)
    assert beliefs.shape == (20000, 2)
    np.testing.assert_allclose(beliefs.sum(axis=1), 1.0)
    changed = series.log_returns.copy()
    changed[12000:] = -changed[12000:]
    np.testing.assert_array_equal(forward_filter(changed, params)[:12000], beliefs[:12000])
    # calibration, pooled over seeds (bars within a regime are strongly dependent): among bars where
    # P(up) is in a bin, the share truly up matches the bin
    ups, truths = [], []
    for seed in range(6):
        p = parse_synthetic_uri(f"builtin:synthetic?kind=planted&seed={seed}&bars=40000")
        g = generate(p)
        assert g.log_returns is not None and g.regime is not None
        ups.append(forward_filter(g.log_returns, p)[:, 0])
        truths.append(g.regime > 0)
    up, truly_up = np.concatenate(ups), np.concatenate(truths)
    for lo, hi in ((0.0, 0.2), (0.4, 0.6), (0.8, 1.0)):
        sel = (up >= lo) & (up < hi)
        assert sel.sum() > 5000
        assert abs(float(truly_up[sel].mean()) - float(up[sel].mean())) < 0.06, (lo, hi)
    assert float(np.mean((up > 0.5) == truly_up)) > 0.75


def test_forward_filter_handles_fat_tails_and_volatility_regimes() -> None:
    params = parse_synthetic_uri(
        "builtin:synthetic?kind=planted&seed=1&bars=20000&df=4&volratio=3&volregime=1000&strength=0.15")
    series = generate(params)
    assert series.log_returns is not None and series.turbulent is not None and series.regime is not None
    excess_kurtosis = float(pd.Series(series.log_returns).kurt())
    assert excess_kurtosis > 1.0  # fat tails (t with 4 df, mixed volatilities)
    beliefs = forward_filter(series.log_returns, params)
    assert beliefs.shape == (20000, 4)
    turbulent_belief = beliefs[:, 2:].sum(axis=1)
    assert float(np.mean((turbulent_belief > 0.5) == series.turbulent)) > 0.9
    up = beliefs[:, 0] + beliefs[:, 2]
    assert float(np.mean((up > 0.5) == (series.regime > 0))) > 0.7
    scores = forward_filter_scores(series)
    assert scores.shape == (20000,) and np.abs(scores).max() <= params.strength
