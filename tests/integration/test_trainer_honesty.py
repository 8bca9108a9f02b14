"""The evaluation tells a modest real edge from noise by its statistics (issue 9), measured end to end
through ``pipeline.evaluate_walk_forward`` (features, walk-forward, position layer, costs, DSR, criteria).

Every spec field is at its default (the series, the trees, the position layer, the criteria) except
the dataset URI; one thread. The random walks are one year of hourly bars each, and their seeds
(1000-1029) are used nowhere else in the tests. The planted checks cost ~1-2 minutes of CPU each.
"""

from __future__ import annotations

import numpy as np
import pytest
from clm_contract.metrics import Criteria
from clm_contract.promotion import evaluate
from clm_contract.training_job import TrainingJobSpec
from clm_trainer.data import load_dataset
from clm_trainer.features import build_series
from clm_trainer.pipeline import evaluate_walk_forward, forward_filter_benchmark, position_sizes
from clm_trainer.walkforward import first_usable_row, make_folds

# the "weaker planted" variant of clm_trainer.synthetic: the forward filter nets about 1-1.5
WEAKER = "strength=0.045"


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLM_NUM_THREADS", "1")


def spec_for(uri: str, algorithm: str = "xgboost", **evaluation: object) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({
        "modelName": "honesty", "algorithm": algorithm, "dataset": {"uri": uri, "symbol": "SYN"},
        "evaluation": evaluation})


def filter_sharpe(uri: str) -> float:
    """Net Sharpe of the forward filter behind the default position layer on a default walk-forward's
    test bars (no model is trained: the filter needs none)."""
    spec = spec_for(uri)
    bars = load_dataset(spec.dataset).bars
    data = build_series(bars, spec.features, spec.target)
    folds = make_folds(data.features.shape[0], first_usable_row(data.features), data.target,
                       folds=spec.evaluation.folds, min_train_fraction=spec.evaluation.min_train_fraction,
                       embargo=spec.embargo, horizon=spec.target.horizon_bars)
    sizes = position_sizes(spec, data.bar_returns, 8760.0)
    bench = forward_filter_benchmark(spec, data, folds, bars.index, sizes, 8760.0, 1)
    assert bench is not None
    return float(bench["metrics"]["sharpe"])


def test_forward_filter_nets_an_annual_sharpe_of_2_to_4_at_the_planted_defaults() -> None:
    sharpes = [filter_sharpe(f"builtin:synthetic?kind=planted&seed={seed}") for seed in range(10)]
    assert 2.0 <= float(np.median(sharpes)) <= 4.0, sharpes
    assert sum(1.0 <= s <= 6.0 for s in sharpes) >= 9, sharpes


def test_weaker_planted_data_filter_nets_about_1_to_1_5() -> None:
    sharpes = [filter_sharpe(f"builtin:synthetic?kind=planted&seed={seed}&{WEAKER}") for seed in range(10)]
    assert 0.8 <= float(np.median(sharpes)) <= 1.8, sharpes


def test_random_walk_without_costs_is_rejected_by_its_statistics() -> None:
    """Zero costs, so only the statistics can stop luck: at most 1 of 30 passes, and the DSR criterion
    alone rejects at least 25 (its verdict is checked on the metrics with every other criterion off)."""
    dsr_only = Criteria(min_sharpe=-1e9, min_win_rate=0, min_profit_factor=0, max_drawdown=1, min_trades=0)
    passed = dsr_rejected = traded = 0
    for seed in range(1000, 1030):
        spec = spec_for(f"builtin:synthetic?kind=random_walk&seed={seed}&bars=8760",
                        costs={"feeBps": 0, "slippageBps": 0})
        out = evaluate_walk_forward(spec, load_dataset(spec.dataset).bars)
        assert out.trials["total"] == 9
        passed += out.evaluation.passed
        dsr_rejected += not evaluate(out.metrics, dsr_only).passed
        traded += out.metrics.trades >= 10  # rejected while trading, not for lack of positions
    assert passed <= 1, passed
    assert dsr_rejected >= 25, dsr_rejected
    assert traded >= 25, traded


@pytest.mark.parametrize("algorithm", ["xgboost", "lightgbm"])
def test_planted_defaults_pass_the_default_criteria_in_8_of_10_seeds(algorithm: str) -> None:
    """10 seeds at the planted defaults: every default criterion (DSR over 9 trials included) passes in
    at least 8, and the model's median net Sharpe is at least half the forward filter's on the same
    test bars. Measured: xgboost 8/10 (median 2.52 against the filter's 3.38), lightgbm 9/10 (2.74);
    the misses are win rates of 0.51-0.52 (xgboost) and 0.48 (lightgbm)."""
    nets, filters, passes = [], [], 0
    for seed in range(10):
        spec = spec_for(f"builtin:synthetic?kind=planted&seed={seed}", algorithm)
        out = evaluate_walk_forward(spec, load_dataset(spec.dataset).bars)
        assert out.benchmark is not None and out.trials["total"] == 9
        assert all("positionLayer" in record for record in out.fold_records)
        nets.append(out.metrics.sharpe)
        filters.append(float(out.benchmark["metrics"]["sharpe"]))
        passes += out.evaluation.passed
    assert passes >= 8, (nets, passes)
    assert float(np.median(nets)) >= 0.5 * float(np.median(filters)), (nets, filters)


def test_weaker_planted_data_a_model_still_nets_a_positive_sharpe() -> None:
    """Measured: 9 of 10 seeds net a positive Sharpe (median 0.14 against the filter's 1.59: a weak edge
    is found, barely, and nothing passes the criteria)."""
    positive = 0
    for seed in range(10):
        spec = spec_for(f"builtin:synthetic?kind=planted&seed={seed}&{WEAKER}")
        out = evaluate_walk_forward(spec, load_dataset(spec.dataset).bars)
        positive += out.metrics.sharpe > 0
    assert positive >= 7, positive
