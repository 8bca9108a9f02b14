"""The PPO agent: rewards are the backtest's net returns, determinism, the artifact, no look-ahead."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from clm_contract.hyperparameters import HyperparameterError, PPOHyperparameters, validate_hyperparameters
from clm_contract.training_job import Algorithm, FeaturesSpec, TargetSpec, TrainingJobSpec
from clm_operator.domain.schedule import default_period
from clm_trainer import backtest as bt
from clm_trainer.device import choose_device
from clm_trainer.features import build_series
from clm_trainer.models import trainer_factory
from clm_trainer.models.base import DeviceChoice, SeriesData, TradingTerms
from clm_trainer.models.deep import CONFIG_FILE
from clm_trainer.models.ppo import (
    WEIGHTS_FILE,
    PPOTrainer,
    TradingEnv,
    action_values,
    build_episodes,
    load_policy,
    transition_net_returns,
)
from clm_trainer.synthetic import generate, parse_synthetic_uri

CPU = DeviceChoice("cpu", "unit test")
# A few rollouts of a small network: enough to exercise everything, a second or two per fit.
TINY = {"totalTimesteps": 256, "nEnvs": 2, "nSteps": 64, "batchSize": 64, "nEpochs": 2, "netArch": [16, 16]}


@pytest.fixture(autouse=True)
def _one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLM_TORCH_THREADS", "1")


def series(bars: int = 900, seed: int = 3, horizon: int = 4) -> SeriesData:
    planted = generate(parse_synthetic_uri(
        f"builtin:synthetic?kind=planted&seed={seed}&bars={bars}&strength=1.5&regime=50"))
    return build_series(planted.bars, FeaturesSpec(return_lags=[1, 2, 5], windows=[5, 20]),
                        TargetSpec(horizon_bars=horizon))


def tiny(**overrides: object) -> PPOHyperparameters:
    return PPOHyperparameters.model_validate({**TINY, **overrides})


def state_of(trainer: PPOTrainer) -> dict[str, torch.Tensor]:
    assert trainer.trained is not None
    return {k: v.detach().clone() for k, v in trainer.trained.policy.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(("decision_bars", "phase", "allow_short"),
                         [(1, 0, True), (5, 2, True), (7, 3, True), (4, 1, False)])
def test_rewards_add_up_to_the_backtest_of_the_same_positions(decision_bars: int, phase: int,
                                                              allow_short: bool) -> None:
    """Any action sequence: the env's rewards sum to the per-bar net returns the backtest books."""
    rng = np.random.default_rng(decision_bars)
    n = 240
    returns = np.concatenate([[0.0], rng.normal(0.0, 0.01, n - 1)])
    observations = rng.normal(size=(n, 3)).astype(np.float32)
    terms = TradingTerms(fee_bps=10.0, slippage_bps=5.0, allow_short=allow_short)
    actions = action_values(allow_short)
    train = np.arange(20, 180)
    episodes = build_episodes(observations, returns, train, decision_bars=decision_bars, phase=phase,
                              actions=actions, terms=terms, reward_scale=1.0)
    env = TradingEnv(episodes, actions, clip=10.0)
    env.reset()
    positions = np.zeros(n)
    total, done, step = 0.0, False, 0
    while not done:
        action = int(rng.integers(len(actions)))
        _, reward, done, _, _ = env.step(action)
        total += reward
        row = int(episodes[0].decision_rows[step])
        positions[row:row + decision_bars] = actions[action]
        step += 1
    lo, hi = int(train[0]), int(train[-1]) + 1  # the backtest over the training bars, closed at the end
    result = bt.run_backtest(positions[lo:hi], returns[lo:hi], fee_bps=10.0, slippage_bps=5.0,
                             periods_per_year=8760.0)
    assert total == pytest.approx(float(result.net_returns.sum()), rel=1e-12, abs=1e-15)
    assert step == len(episodes[0].decision_rows)


def test_transition_returns_follow_the_backtest_conventions() -> None:
    r = np.array([0.01, -0.02])
    cost = 15e-4
    np.testing.assert_allclose(transition_net_returns(0.0, 1.0, r, fee_bps=10, slippage_bps=5), r - cost)
    np.testing.assert_allclose(transition_net_returns(1.0, 1.0, r, fee_bps=10, slippage_bps=5), r)
    # a flip pays the closing leg first, then the opening leg out of what remains
    np.testing.assert_allclose(transition_net_returns(1.0, -1.0, r, fee_bps=10, slippage_bps=5),
                               (1 - cost) * (1 - r - cost) - 1)
    np.testing.assert_allclose(transition_net_returns(-1.0, 0.0, np.zeros(1), fee_bps=10, slippage_bps=5),
                               [-cost])


def test_hyperparameters_are_validated_and_unknown_keys_rejected() -> None:
    assert isinstance(validate_hyperparameters("ppo", {"totalTimesteps": 1000, "entCoef": 0.01}),
                      PPOHyperparameters)
    with pytest.raises(HyperparameterError, match="spec.hyperparameters.nStep.*allowed keys.*nSteps"):
        validate_hyperparameters("ppo", {"nStep": 64})
    with pytest.raises(HyperparameterError, match="batchSize.*nSteps x nEnvs"):
        validate_hyperparameters("ppo", {"nSteps": 16, "nEnvs": 2, "batchSize": 64})
    for bad in ({"gamma": 1.5}, {"learningRate": 0}, {"netArch": []}, {"activation": "gelu"},
                {"budget": "gpu"}):
        with pytest.raises(HyperparameterError):
            validate_hyperparameters("ppo", bad)
    spec = TrainingJobSpec.model_validate({"modelName": "rl", "algorithm": "ppo", "dataset": {
        "uri": "builtin:synthetic", "symbol": "S"}, "hyperparameters": {"gamma": 0.95}})
    assert spec.algorithm == Algorithm.PPO


def test_registry_schedule_and_device() -> None:
    assert trainer_factory("ppo") is PPOTrainer
    assert PPOTrainer.outputs_positions is True
    assert default_period("ppo") == timedelta(hours=24)
    assert choose_device("ppo", 0) == DeviceChoice("cpu", "spec.resources.gpu is 0")
    choice = choose_device("ppo", 1)
    assert choice.kind == ("cuda" if torch.cuda.is_available() else "cpu")
    assert "GPU" in choice.reason or "CUDA" in choice.reason


def test_cpu_budget_caps_only_the_keys_the_spec_leaves_out() -> None:
    unset = PPOTrainer(validate_hyperparameters("ppo", {}), 1, CPU)
    assert unset.hp.total_timesteps == 20_000 and unset.budget is not None
    assert unset.budget["name"] == "cpu" and unset.budget["settings"] == {"totalTimesteps": 20_000}
    assert "CPU" in unset.budget["reason"]
    given = PPOTrainer(validate_hyperparameters("ppo", {"totalTimesteps": 777}), 1, CPU)
    assert given.hp.total_timesteps == 777 and given.budget is not None
    assert given.budget["settings"] == {} and "totalTimesteps" in given.budget["reason"]
    forced = PPOTrainer(validate_hyperparameters("ppo", {"budget": "full"}), 1, CPU)
    assert forced.hp.total_timesteps == PPOHyperparameters().total_timesteps
    assert forced.budget is not None and forced.budget["name"] == "full"
    gpu = PPOTrainer(validate_hyperparameters("ppo", {}), 1, DeviceChoice("cuda", "1 GPU requested"))
    assert gpu.hp.total_timesteps == PPOHyperparameters().total_timesteps
    assert gpu.budget is not None and gpu.budget["name"] == "full" and "cuda" in gpu.budget["reason"]


def test_training_is_deterministic_and_the_artifact_reloads_bit_for_bit(tmp_path: Path) -> None:
    data = series()
    train = np.arange(250, 650)
    first, second = PPOTrainer(tiny(), 5, CPU), PPOTrainer(tiny(), 5, CPU)
    first.fit(data, train)
    second.fit(data, train)
    assert_same_state(state_of(first), state_of(second))
    other_seed = PPOTrainer(tiny(), 6, CPU)
    other_seed.fit(data, train)
    assert not all(torch.equal(a, b) for a, b in zip(state_of(first).values(), state_of(other_seed).values(),
                                                       strict=True))

    test = np.arange(650, 890)
    positions = first.predict(data, test)
    np.testing.assert_array_equal(positions, second.predict(data, test))
    assert set(np.unique(positions)) <= {-1.0, 0.0, 1.0}
    blocks = positions.reshape(-1, data.horizon_bars)  # decisions every horizonBars, held in between
    assert (blocks == blocks[:, :1]).all()

    main = first.save(tmp_path)
    assert main == tmp_path / WEIGHTS_FILE
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["algorithm"] == "ppo" and config["decisionBars"] == data.horizon_bars
    assert config["featureNames"] == data.feature_names and config["actions"] == [-1.0, 0.0, 1.0]
    assert config["budget"]["name"] == "cpu"
    state = torch.load(main, weights_only=True)  # plain tensors: no pickled objects to trust
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert not list(tmp_path.glob("*.zip"))  # SB3's .save() zip (cloudpickle) is not shipped
    reloaded = load_policy(tmp_path)
    np.testing.assert_array_equal(reloaded.positions(data.features, test), positions)
    assert first.trained is not None
    rows = np.arange(600, 700)
    np.testing.assert_array_equal(reloaded.action_probabilities(data.features, rows),
                                  first.trained.action_probabilities(data.features, rows))
    # the same run writes the same bytes (a retried pod re-uploads identical files)
    again = tmp_path / "again"
    second.save(again)
    assert (again / WEIGHTS_FILE).read_bytes() == main.read_bytes()
    assert (again / CONFIG_FILE).read_text() == (tmp_path / CONFIG_FILE).read_text()


def test_prices_after_the_training_window_change_no_weight() -> None:
    data = series()
    train = np.arange(250, 600)
    reference = PPOTrainer(tiny(), 2, CPU)
    reference.fit(data, train)
    rng = np.random.default_rng(0)
    bars = data.bars.copy()
    after = bars.index[train[-1] + 1:]
    bars.loc[after, ["open", "high", "low", "close"]] *= np.exp(rng.normal(0, 0.05, (len(after), 1)))
    changed = build_series(bars, FeaturesSpec(return_lags=[1, 2, 5], windows=[5, 20]),
                           TargetSpec(horizon_bars=data.horizon_bars))
    assert not np.allclose(changed.bar_returns[train[-1] + 1:], data.bar_returns[train[-1] + 1:])
    np.testing.assert_array_equal(changed.features[:train[-1] + 1], data.features[:train[-1] + 1])
    retrained = PPOTrainer(tiny(), 2, CPU)
    retrained.fit(changed, train)
    assert_same_state(state_of(reference), state_of(retrained))


def test_long_only_runs_never_go_short_and_costs_come_from_the_data() -> None:
    data = replace(series(), trading=TradingTerms(fee_bps=20.0, slippage_bps=0.0, allow_short=False))
    trainer = PPOTrainer(tiny(), 1, CPU)
    trainer.fit(data, np.arange(250, 600))
    positions = trainer.predict(data, np.arange(600, 880))
    assert set(np.unique(positions)) <= {0.0, 1.0}
    assert trainer.trained is not None and trainer.trained.actions == (0.0, 1.0)


def test_a_window_without_room_for_a_decision_is_a_clear_error() -> None:
    from clm_trainer.data import DataError

    data = series()
    with pytest.raises(DataError, match="decisionBars"):
        PPOTrainer(tiny(decisionBars=500), 1, CPU).fit(data, np.arange(250, 400))
