"""PPO: a trading agent trained with stable-baselines3 on each training window, acting on the test fold.

Schulman, Wolski, Dhariwal, Radford, Klimov, "Proximal Policy Optimization Algorithms", 2017
(arXiv:1707.06347); the implementation is stable-baselines3's (Raffin et al., JMLR 22(268), 2021).
The trainer only builds the environment, runs the library's PPO and ships the policy's weights.

The environment (``TradingEnv``, a gymnasium ``Env``)
------------------------------------------------------
Decision
    At the close of bar ``t`` of a grid every ``k = decisionBars`` bars (default the target horizon)
    the agent picks a target position in {-1, 0, +1} ({0, +1} when shorts are off), held over bars
    ``t+1 .. t+k`` until its next decision: the backtest's timing (decided at the close of ``t``,
    earning from bar ``t+1``).
Observation
    The past-only features of row ``t`` (``SeriesData.features``, what every algorithm sees),
    normalised with the mean and standard deviation of the TRAINING rows, NaN -> 0, clipped to
    +-``observationClip``; then a one-hot of the position held before the decision (so the agent can
    weigh what a change costs).
Reward
    The net return of the bars the position is held, per bar summed: exactly what the backtest books.
    The per-bar net returns come from ``clm_trainer.backtest.run_backtest`` itself
    (``transition_net_returns``): same fee + slippage, same closing and opening legs. An episode's last
    position is closed at its last close with the backtest's closing cost. Rewards are divided by
    ``std(bar returns of the training rows) * sqrt(k)``, which keeps them near unit size and does not
    change which policy is best.
Episode
    One pass over the training window (each contiguous run of training rows). ``nEnvs`` copies run side
    by side, copy ``i`` with its decision grid shifted by ``i*k // nEnvs`` bars, so a rollout sees the
    grid's phases and different stretches of the window's noise.
Leakage
    Only training rows' features and the returns of bars inside the training window are read: prices
    after the window cannot change a weight (tests/unit/test_ppo.py changes them and compares weights).

Walk-forward and prediction
    ``fit`` trains a fresh agent on the fold's training rows only. ``predict`` acts deterministically
    (the most probable action) on the rows of ``idx``: a decision at ``idx[0]`` and every ``k`` rows
    after, starting flat, each held until the next. It returns positions (``outputs_positions``), which
    the pipeline backtests as they are, with the same costs and metrics as every other algorithm.
Determinism
    PPO's seed, fixed environments, a fixed torch thread count and deterministic kernels: a CPU run is
    repeatable bit for bit.
Artifact
    ``policy.pt`` = ``torch.save`` of the policy's ``state_dict`` (tensors only: loads with
    ``weights_only=True``) and ``config.json`` (features, normalisation, actions, network, decision
    interval, costs, budget). SB3's own ``.save()`` zip carries cloudpickled objects and is never
    shipped. ``load_policy`` rebuilds the policy from ``config.json``; its ``positions`` are the
    trainer's ``predict``, bit for bit.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from clm_contract.common import CamelModel
from clm_contract.hyperparameters import PPOHyperparameters
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor
from torch import nn

from clm_trainer import backtest as bt
from clm_trainer.models.base import DeviceChoice, SeriesData, TradingTerms
from clm_trainer.models.budget import apply_budget
from clm_trainer.models.deep import (
    DeepTrainingError,
    as_hyperparameters,
    deterministic_torch,
    fixed_threads,
    read_config,
    resolve_device,
    torch_threads,
    write_torch_artifact,
)

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = "torch-state-dict"
CONFIG_FORMAT = "clm-ppo-policy/v1"
WEIGHTS_FILE = "policy.pt"
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def action_values(allow_short: bool) -> tuple[float, ...]:
    """The positions the discrete actions stand for, in action order."""
    return (-1.0, 0.0, 1.0) if allow_short else (0.0, 1.0)


# ----------------------------------------------------------------------------- rewards


def transition_net_returns(old: float, new: float, bar_returns: np.ndarray, *, fee_bps: float,
                           slippage_bps: float) -> np.ndarray:
    """The net return of a bar held at ``new`` right after a bar held at ``old``, per bar return given.

    Computed by ``backtest.run_backtest`` itself, so the reward can never drift from the backtest's
    conventions: positions alternate ``old, new, old, new, ..., old`` over bars whose returns are 0 on
    the ``old`` bars and ``bar_returns`` on the ``new`` bars; every ``new`` bar is then exactly "a change
    from ``old`` to ``new`` (closing leg, opening leg) followed by the bar's return", and the trailing
    ``old`` bar takes the backtest's end-of-series close. ``old == new`` is a bar without a change.
    """
    r = np.asarray(bar_returns, dtype=np.float64)
    k = r.size
    if k == 0:
        return np.empty(0)
    held = np.empty(2 * k + 1)  # held[i] is held over bar i + 1
    held[0::2], held[1::2] = old, new
    positions = np.append(held, 0.0)  # the last position is never held
    returns = np.zeros(2 * k + 2)
    returns[2::2] = r  # bar 2j + 2 is held at `new` (held[2j + 1])
    result = bt.run_backtest(positions, returns, fee_bps=fee_bps, slippage_bps=slippage_bps,
                             periods_per_year=1.0)
    net: np.ndarray = result.net_returns[2::2].copy()
    return net


@dataclass(frozen=True)
class Episode:
    """One pass over a contiguous run of training bars at one phase of the decision grid."""

    observations: np.ndarray  # (J, f) float32: normalised features at each decision row
    rewards: np.ndarray  # (J, A, A) float64: scaled reward of decision j from previous action to action
    decision_rows: np.ndarray  # (J,) row index of each decision


def contiguous_runs(rows: np.ndarray) -> list[np.ndarray]:
    """Maximal runs of consecutive integers in sorted ``rows``."""
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    return [run for run in np.split(rows, breaks) if run.size]


def build_episodes(observations: np.ndarray, bar_returns: np.ndarray, train_idx: np.ndarray, *,
                   decision_bars: int, phase: int, actions: tuple[float, ...], terms: TradingTerms,
                   reward_scale: float) -> list[Episode]:
    """The episodes of one environment copy: every contiguous run of training rows, decisions every
    ``decision_bars`` rows from ``run[0] + phase``; a decision needs at least one held bar in the run.

    ``observations`` is the normalised feature matrix of every row (only training rows are read).
    Rewards of decision ``j`` at row ``d``, previous action ``o``, action ``a``: the per-bar net returns
    of bars ``d+1 .. e`` (``e`` = the next decision or the run's last row) held at ``actions[a]``, the
    first bar carrying the change from ``actions[o]``; the run's last bar also carries the close.
    """
    episodes: list[Episode] = []
    n_actions = len(actions)
    for run in contiguous_runs(train_idx):
        first, last = int(run[0]), int(run[-1])
        decisions = np.arange(first + phase, last, decision_bars, dtype=np.int64)
        if decisions.size == 0:
            continue
        bars = np.arange(first + 1, last + 1)  # bars that can be held in this run
        r = bar_returns[bars]
        per_bar = np.empty((n_actions, n_actions, bars.size))
        for i, old in enumerate(actions):
            for j, new in enumerate(actions):
                per_bar[i, j] = transition_net_returns(old, new, r, fee_bps=terms.fee_bps,
                                                       slippage_bps=terms.slippage_bps)
        close = np.array([transition_net_returns(a, 0.0, np.zeros(1), fee_bps=terms.fee_bps,
                                                 slippage_bps=terms.slippage_bps)[0] for a in actions])
        # held[a][u]: cumulative net return of holding actions[a] without a change over bars[..u]
        unchanged = per_bar[np.arange(n_actions), np.arange(n_actions)]
        held = np.concatenate([np.zeros((n_actions, 1)), np.cumsum(unchanged, axis=1)], axis=1)
        first_bar = decisions + 1 - (first + 1)  # position in `bars` of each block's first bar
        end_bar = np.minimum(decisions + decision_bars, last) - (first + 1)  # last bar of each block
        rewards = np.empty((decisions.size, n_actions, n_actions))
        for j in range(n_actions):
            rest = held[j, end_bar + 1] - held[j, first_bar + 1]  # bars after the first, no change
            rewards[:, :, j] = per_bar[:, j, first_bar].T + rest[:, None]
        # the last bar of the run closes the position: (1 + net) * (1 + close) - 1 for that bar
        last_block = decisions.size - 1
        for j in range(n_actions):
            if end_bar[last_block] == first_bar[last_block]:
                last_net = per_bar[:, j, end_bar[last_block]]
            else:
                last_net = np.full(n_actions, per_bar[j, j, end_bar[last_block]])
            rewards[last_block, :, j] += close[j] * (1.0 + last_net)
        episodes.append(Episode(observations=observations[decisions], rewards=rewards / reward_scale,
                                decision_rows=decisions))
    return episodes


class TradingEnv(gym.Env[np.ndarray, np.int64]):
    """Steps through prepared episodes (``build_episodes``) in turn; every step is a table lookup."""

    metadata = {"render_modes": []}  # gymnasium's own attribute

    def __init__(self, episodes: list[Episode], actions: tuple[float, ...], clip: float) -> None:
        super().__init__()
        if not episodes:
            raise ValueError("no episode: the training window holds no decision")
        self.episodes = episodes
        self.actions = actions
        self.flat = actions.index(0.0)
        n_features = episodes[0].observations.shape[1]
        self.observation_space = gym.spaces.Box(-clip, clip, (n_features + len(actions),), np.float32)
        self.action_space = gym.spaces.Discrete(len(actions))
        self._episode = -1
        self._step = 0
        self._previous = self.flat

    def _observation(self) -> np.ndarray:
        episode = self.episodes[self._episode]
        row = episode.observations[min(self._step, len(episode.observations) - 1)]
        observation: np.ndarray = observation_with_position(row[None, :], self._previous,
                                                            len(self.actions))[0]
        return observation

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._episode = (self._episode + 1) % len(self.episodes)
        self._step = 0
        self._previous = self.flat
        return self._observation(), {}

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        chosen = int(action)
        episode = self.episodes[self._episode]
        reward = float(episode.rewards[self._step, self._previous, chosen])
        self._previous = chosen
        self._step += 1
        terminated = self._step >= len(episode.observations)
        return self._observation(), reward, terminated, False, {}


def observation_with_position(features: np.ndarray, previous: int, n_actions: int) -> np.ndarray:
    """Rows of normalised features followed by the one-hot of the previous action, float32."""
    out = np.zeros((features.shape[0], features.shape[1] + n_actions), dtype=np.float32)
    out[:, :features.shape[1]] = features
    out[:, features.shape[1] + previous] = 1.0
    return out


# ----------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class Normaliser:
    """Per-feature mean and standard deviation of the training rows; NaN -> 0 after, then clipped."""

    mean: np.ndarray  # float64
    std: np.ndarray  # float64, > 0
    clip: float

    @classmethod
    def of_rows(cls, features: np.ndarray, rows: np.ndarray, clip: float) -> Normaliser:
        x = np.asarray(features[rows], dtype=np.float64)
        finite = np.isfinite(x)
        count = finite.sum(axis=0)
        total = np.where(finite, x, 0.0).sum(axis=0)
        mean = np.divide(total, count, out=np.zeros(x.shape[1]), where=count > 0)
        centred = np.where(finite, x - mean, 0.0)
        var = np.divide((centred**2).sum(axis=0), count, out=np.zeros(x.shape[1]), where=count > 0)
        std = np.sqrt(var)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(mean=mean, std=std, clip=float(clip))

    def apply(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        z = np.clip(np.nan_to_num(z, nan=0.0, posinf=self.clip, neginf=-self.clip), -self.clip, self.clip)
        normalised: np.ndarray = z.astype(np.float32)
        return normalised


def build_policy(n_features: int, actions: tuple[float, ...], net_arch: list[int], activation: str,
                 clip: float) -> ActorCriticPolicy:
    """The stable-baselines3 actor-critic policy for these shapes (as PPO builds it), untrained."""
    observation_space = gym.spaces.Box(-clip, clip, (n_features + len(actions),), np.float32)
    return ActorCriticPolicy(observation_space, gym.spaces.Discrete(len(actions)), lambda _: 0.0,
                             net_arch={"pi": list(net_arch), "vf": list(net_arch)},
                             activation_fn=ACTIVATIONS[activation])


@dataclass
class TradingPolicy:
    """A policy with its normalisation and decision grid: what the artifact rebuilds and serves."""

    policy: ActorCriticPolicy
    normaliser: Normaliser
    actions: tuple[float, ...]
    decision_bars: int

    def action_probabilities(self, features: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(len(rows), previous action, action) probabilities at each row, in one batch."""
        z = self.normaliser.apply(features[np.asarray(rows, dtype=np.int64)])
        n_actions = len(self.actions)
        batch = np.concatenate([observation_with_position(z, p, n_actions) for p in range(n_actions)])
        device = self.policy.device
        self.policy.set_training_mode(False)
        with fixed_threads(torch_threads()), torch.inference_mode():
            distribution = self.policy.get_distribution(torch.as_tensor(batch, device=device))
            categorical = cast(torch.distributions.Categorical, distribution.distribution)
            probs = categorical.probs.float().cpu().numpy()
        return probs.reshape(n_actions, len(rows), n_actions).transpose(1, 0, 2)

    def positions(self, features: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Positions for the rows of ``idx`` (in order): decide at ``idx[0]`` and every ``decision_bars``
        rows after with the most probable action, starting flat; hold each decision until the next."""
        idx = np.asarray(idx, dtype=np.int64)
        out = np.zeros(idx.size, dtype=np.float64)
        if idx.size == 0:
            return out
        decisions = idx[::self.decision_bars]
        best = self.action_probabilities(features, decisions).argmax(axis=2)  # (decision, previous)
        values = np.asarray(self.actions)
        previous = self.actions.index(0.0)
        for j in range(decisions.size):
            previous = int(best[j, previous])
            out[j * self.decision_bars:(j + 1) * self.decision_bars] = values[previous]
        return out


class _Progress(BaseCallback):
    """Logs the training progress at every quarter of the timesteps (a fit may take a while)."""

    def __init__(self, total: int, label: str) -> None:
        super().__init__()
        self.total, self.label, self.next_mark = total, label, 0.25

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        done = self.model.num_timesteps / max(self.total, 1)
        if done >= self.next_mark:
            buffer: list[dict[str, Any]] = list(self.model.ep_info_buffer or [])
            mean = float(np.mean([info["r"] for info in buffer])) if buffer else float("nan")
            log.info("%s: %d/%d timesteps, mean episode reward %.3f", self.label, self.model.num_timesteps,
                     self.total, mean)
            while self.next_mark <= done:
                self.next_mark += 0.25


# ----------------------------------------------------------------------------- the trainer


class PPOTrainer:
    """``ModelTrainer`` for ``algorithm: ppo`` (see the module docstring)."""

    algorithm: ClassVar[str] = "ppo"
    artifact_format: ClassVar[str] = ARTIFACT_FORMAT
    outputs_positions: ClassVar[bool] = True

    def __init__(self, hyperparameters: CamelModel | None, seed: int, device: DeviceChoice) -> None:
        given = as_hyperparameters(PPOHyperparameters, hyperparameters)
        self.hp: PPOHyperparameters
        self.hp, self.budget_record = apply_budget(self.algorithm, given, device)
        self.budget: dict[str, Any] | None = self.budget_record.to_wire()
        self.seed = int(seed)
        self.device_choice = device
        self.device = resolve_device(device)
        self.trained: TradingPolicy | None = None
        self.feature_names: list[str] = []
        self.terms = TradingTerms()
        self.summary: dict[str, Any] = {}

    def decision_bars_for(self, data: SeriesData) -> int:
        return int(self.hp.decision_bars or data.horizon_bars)

    def fit(self, data: SeriesData, train_idx: np.ndarray) -> None:
        train_idx = np.unique(np.asarray(train_idx, dtype=np.int64))
        if train_idx.size < 2:
            raise DeepTrainingError("spec.dataset", f"{train_idx.size} training rows: PPO needs at least 2",
                                    "use more data (spec.dataset) or fewer folds (spec.evaluation.folds)")
        hp = self.hp
        k = self.decision_bars_for(data)
        self.terms = data.trading
        self.feature_names = list(data.feature_names)
        actions = action_values(data.trading.allow_short)
        normaliser = Normaliser.of_rows(data.features, train_idx, hp.observation_clip)
        observations = normaliser.apply(data.features[train_idx[0]:train_idx[-1] + 1])
        # rows are indexed from train_idx[0]: shift so build_episodes reads only the training block
        offset = int(train_idx[0])
        returns = np.asarray(data.bar_returns[offset:train_idx[-1] + 1], dtype=np.float64)
        bar_std = float(np.std(returns[1:])) if returns.size > 2 else 0.0
        reward_scale = (bar_std if bar_std > 0 else 1.0) * math.sqrt(k)
        local_rows = train_idx - offset
        per_env = [build_episodes(observations, returns, local_rows, decision_bars=k,
                                  phase=(i * k) // hp.n_envs, actions=actions, terms=data.trading,
                                  reward_scale=reward_scale) for i in range(hp.n_envs)]
        if not all(per_env):
            raise DeepTrainingError(
                "spec.hyperparameters.decisionBars",
                f"the training window ({train_idx.size} rows) holds no decision every {k} bars",
                "use more data (spec.dataset), fewer folds, or a smaller decisionBars")
        decisions = sum(len(e.decision_rows) for e in per_env[0])
        with deterministic_torch(self.seed, torch_threads()):
            env = VecMonitor(DummyVecEnv([_env_factory(episodes, actions, hp.observation_clip)
                                          for episodes in per_env]))
            model = PPO(
                "MlpPolicy", env, learning_rate=hp.learning_rate, n_steps=hp.n_steps,
                batch_size=hp.batch_size, n_epochs=hp.n_epochs, gamma=hp.gamma, gae_lambda=hp.gae_lambda,
                clip_range=hp.clip_range,
                ent_coef=hp.ent_coef, vf_coef=hp.vf_coef, max_grad_norm=hp.max_grad_norm,
                policy_kwargs={"net_arch": {"pi": list(hp.net_arch), "vf": list(hp.net_arch)},
                               "activation_fn": ACTIVATIONS[hp.activation]},
                seed=self.seed, device=self.device, verbose=0)
            label = f"ppo fit on rows {train_idx[0]}..{train_idx[-1]}"
            model.learn(total_timesteps=hp.total_timesteps, callback=_Progress(hp.total_timesteps, label))
            env.close()
        policy = model.policy
        policy.set_training_mode(False)
        self.trained = TradingPolicy(policy=policy, normaliser=normaliser, actions=actions, decision_bars=k)
        self.summary = {"timesteps": int(model.num_timesteps), "trainRows": int(train_idx.size),
                        "decisionsPerEpisode": int(decisions), "environments": hp.n_envs,
                        "rewardScale": reward_scale}
        budget = self.budget_record
        log.info("ppo trained: device=%s timesteps=%d rows=%d decisions/episode=%d every %d bars budget=%s "
                 "(%s) %s", self.device, model.num_timesteps, train_idx.size, decisions, k, budget.name,
                 budget.reason, budget.settings)

    def _policy(self, action: str) -> TradingPolicy:
        if self.trained is None:
            raise RuntimeError(f"ppo: {action} called before fit")
        return self.trained

    def predict(self, data: SeriesData, idx: np.ndarray) -> np.ndarray:
        """Positions for ``idx`` (see ``TradingPolicy.positions``); shorts only if trained with them."""
        return self._policy("predict").positions(data.features, idx)

    def feature_importance(self) -> dict[str, float] | None:
        return None

    def save(self, directory: Path) -> Path:
        trained = self._policy("save")
        config = {
            "format": CONFIG_FORMAT,
            "algorithm": self.algorithm,
            "featureNames": self.feature_names,
            "normalisation": {"mean": trained.normaliser.mean.tolist(),
                              "std": trained.normaliser.std.tolist(), "clip": trained.normaliser.clip},
            "observation": "normalised features of row t (NaN -> 0, clipped), then the one-hot of the "
                           "previous position in the order of actions",
            "actions": list(trained.actions),
            "decisionBars": trained.decision_bars,
            "policy": {"netArch": list(self.hp.net_arch), "activation": self.hp.activation},
            "trading": {"feeBps": self.terms.fee_bps, "slippageBps": self.terms.slippage_bps,
                        "allowShort": self.terms.allow_short},
            "hyperparameters": self.hp.to_wire(),
            "budget": self.budget,
            "seed": self.seed,
            "training": self.summary,
            "stableBaselines3Version": stable_baselines3.__version__,
            "torchVersion": torch.__version__,
        }
        return write_torch_artifact(Path(directory), trained.policy, WEIGHTS_FILE, config)


def _env_factory(episodes: list[Episode], actions: tuple[float, ...], clip: float) -> Any:
    def make() -> TradingEnv:
        return TradingEnv(episodes, actions, clip)

    return make


# ----------------------------------------------------------------------------- loading


def load_policy(directory: Path, map_location: str = "cpu") -> TradingPolicy:
    """Rebuild the trading policy from ``config.json`` and load ``policy.pt`` with ``weights_only=True``."""
    config = read_config(directory, CONFIG_FORMAT)
    norm = config["normalisation"]
    normaliser = Normaliser(mean=np.asarray(norm["mean"], dtype=np.float64),
                            std=np.asarray(norm["std"], dtype=np.float64), clip=float(norm["clip"]))
    actions = tuple(float(a) for a in config["actions"])
    policy = build_policy(len(config["featureNames"]), actions, list(config["policy"]["netArch"]),
                          str(config["policy"]["activation"]), normaliser.clip)
    state = torch.load(Path(directory) / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    policy.load_state_dict(state)
    policy.to(map_location)
    policy.set_training_mode(False)
    return TradingPolicy(policy=policy, normaliser=normaliser, actions=actions,
                         decision_bars=int(config["decisionBars"]))
