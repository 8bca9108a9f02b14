"""Hyperparameters, validated per algorithm: an unknown key or a bad value is an error naming it.

In the CRD ``spec.hyperparameters`` is a free-form object (its shape depends on ``algorithm``); these
models are what validates it, in the operator before any Job is created and again in the trainer.
Keys are camelCase like every other field of a Kubernetes resource.

Training budgets (N-HiTS, PatchTST, PPO): ``budget: auto`` (default) trains a CUDA run with the
paper-sized defaults below and a CPU run with smaller *caps* (fewer epochs and training windows, fewer
timesteps) so that a default run finishes in minutes on 2 cores; ``cpu`` / ``full`` force one. A cap
replaces only a key the spec leaves out: a value given in the spec is always used as given. The caps
are in ``clm_trainer.models.budget``; the manifest, the artifact's config and the log say which budget
applied and why.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from clm_operator.api.common import CamelModel


class XGBoostHyperparameters(CamelModel):
    n_estimators: int = Field(default=200, ge=1, le=10000)
    max_depth: int = Field(default=4, ge=1, le=16)
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    subsample: float = Field(default=0.8, gt=0, le=1)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1)
    min_child_weight: float = Field(default=1.0, ge=0)
    reg_lambda: float = Field(default=1.0, ge=0)
    reg_alpha: float = Field(default=0.0, ge=0)
    gamma: float = Field(default=0.0, ge=0)


class LightGBMHyperparameters(CamelModel):
    n_estimators: int = Field(default=200, ge=1, le=10000)
    num_leaves: int = Field(default=15, ge=2, le=4096)
    max_depth: int = Field(default=-1, ge=-1, le=64, description="-1 means no limit")
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    subsample: float = Field(default=0.8, gt=0, le=1)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1)
    min_child_samples: int = Field(default=20, ge=1)
    reg_lambda: float = Field(default=0.0, ge=0)
    reg_alpha: float = Field(default=0.0, ge=0)


BUDGET_DESCRIPTION = ("auto: CPU runs use the CPU caps for keys the spec leaves out, CUDA runs the full "
                      "defaults; cpu / full force one")
Budget = Literal["auto", "cpu", "full"]


class _DeepTrainingHyperparameters(CamelModel):
    """Training-loop settings shared by the PyTorch forecasters (clm_trainer.models.deep)."""

    budget: Budget = Field(default="auto", description=BUDGET_DESCRIPTION)
    max_train_windows: int | None = Field(
        default=None, ge=64, le=100_000_000,
        description="at most this many windows per fit, evenly spaced over the training rows (the latest "
                    "kept); absent: every window")

    max_epochs: int = Field(default=30, ge=1, le=10000)
    batch_size: int = Field(default=256, ge=1, le=65536)
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    patience: int = Field(default=5, ge=1, le=1000, description="early-stopping patience in epochs")
    validation_fraction: float = Field(default=0.2, gt=0, lt=0.9,
                                       description="last share of the training windows (time order) used "
                                                   "for early stopping")
    weight_decay: float = Field(default=0.0, ge=0)
    mixed_precision: bool = Field(default=True, description="AMP on CUDA; ignored on CPU")
    loss: str = Field(default="mse", pattern=r"^(mse|mae|huber)$",
                      description="training loss on the normalised forecast: mse | mae | huber")
    gradient_clip_norm: float = Field(default=1.0, ge=0, description="0 disables gradient clipping")


class NHiTSHyperparameters(_DeepTrainingHyperparameters):
    """N-HiTS (Challu et al., AAAI 2023, arXiv:2201.12886). Defaults close to the paper.

    One stack per entry of ``poolKernelSizes`` / ``freqDownsample`` (same length): stack s max-pools
    its input with kernel ``poolKernelSizes[s]`` and emits ``max(horizon // freqDownsample[s], 1)``
    forecast knots, linearly interpolated to the horizon.
    """

    input_size_multiplier: int = Field(default=5, ge=1, le=100,
                                       description="input window = multiplier x forecast horizon")
    input_size: int | None = Field(default=None, ge=2, le=4096,
                                   description="explicit input window in bars; overrides the multiplier")
    pool_kernel_sizes: list[int] = Field(default_factory=lambda: [2, 2, 1], min_length=1, max_length=8)
    freq_downsample: list[int] = Field(default_factory=lambda: [4, 2, 1], min_length=1, max_length=8)
    blocks_per_stack: int = Field(default=1, ge=1, le=8)
    mlp_units: int = Field(default=512, ge=4, le=4096)
    mlp_layers: int = Field(default=2, ge=1, le=8)
    dropout: float = Field(default=0.0, ge=0, lt=1)

    @field_validator("pool_kernel_sizes", "freq_downsample")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(v < 1 for v in value):
            raise ValueError("every entry must be an integer >= 1")
        return value

    @field_validator("freq_downsample")
    @classmethod
    def _one_per_stack(cls, value: list[int], info: ValidationInfo) -> list[int]:
        kernels = info.data.get("pool_kernel_sizes")
        if kernels is not None and len(kernels) != len(value):
            raise ValueError(f"needs one entry per stack, like poolKernelSizes ({len(kernels)} entries), "
                             f"got {len(value)}")
        return value


class PatchTSTHyperparameters(_DeepTrainingHyperparameters):
    """PatchTST (Nie et al., ICLR 2023, arXiv:2211.14730). Defaults sized for small data sets."""

    input_size: int = Field(default=96, ge=8, le=4096, description="look-back window in bars")
    patch_len: int = Field(default=16, ge=1, le=512)
    stride: int = Field(default=8, ge=1, le=512)
    d_model: int = Field(default=64, ge=4, le=1024)
    n_heads: int = Field(default=4, ge=1, le=64)
    n_layers: int = Field(default=3, ge=1, le=12)
    d_ff: int = Field(default=128, ge=4, le=8192)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    head_dropout: float = Field(default=0.0, ge=0, lt=1)
    norm: str = Field(default="batch", pattern=r"^(batch|layer)$",
                      description="normalisation in the encoder: batch (as the paper) or layer")
    revin: bool = Field(default=True, description="reversible instance normalisation of each window")

    @field_validator("patch_len")
    @classmethod
    def _patch_fits(cls, value: int, info: ValidationInfo) -> int:
        size = info.data.get("input_size")
        if size is not None and value > size:
            raise ValueError(f"must be <= inputSize ({size})")
        return value

    @field_validator("n_heads")
    @classmethod
    def _heads_divide(cls, value: int, info: ValidationInfo) -> int:
        d_model = info.data.get("d_model")
        if d_model is not None and d_model % value != 0:
            raise ValueError(f"must divide dModel ({d_model}); e.g. 4 or 8")
        return value


class PPOHyperparameters(CamelModel):
    """PPO (Schulman et al. 2017, arXiv:1707.06347) through stable-baselines3 (clm_trainer.models.ppo).

    Timesteps count decisions: the agent picks a position every ``decisionBars`` bars (default the
    target horizon) and holds it until the next decision. ``nSteps`` is per environment: one rollout is
    ``nSteps x nEnvs`` decisions, cut into minibatches of ``batchSize``.
    """

    budget: Budget = Field(default="auto", description=BUDGET_DESCRIPTION)
    total_timesteps: int = Field(default=100_000, ge=1, le=100_000_000,
                                 description="decisions to train on (all environments together)")
    learning_rate: float = Field(default=3e-4, gt=0, le=1)
    n_envs: int = Field(default=8, ge=1, le=256,
                        description="copies of the training window stepped together, each with its own "
                                    "phase of the decision grid")
    n_steps: int = Field(default=128, ge=2, le=65536, description="decisions per environment per rollout")
    batch_size: int = Field(default=256, ge=2, le=1_000_000)
    n_epochs: int = Field(default=10, ge=1, le=1000)
    gamma: float = Field(default=0.9, ge=0, le=1, description="discount per decision")
    gae_lambda: float = Field(default=0.95, ge=0, le=1)
    clip_range: float = Field(default=0.2, gt=0, le=1)
    ent_coef: float = Field(default=0.0, ge=0, le=1, description="entropy bonus")
    vf_coef: float = Field(default=0.5, ge=0, le=10)
    max_grad_norm: float = Field(default=0.5, gt=0, le=100)
    net_arch: list[int] = Field(default_factory=lambda: [64, 64], min_length=1, max_length=8,
                                description="hidden layer sizes of the policy and of the value network")
    activation: Literal["tanh", "relu"] = "tanh"
    decision_bars: int | None = Field(default=None, ge=1, le=10000,
                                      description="bars between decisions; absent: spec.target.horizonBars")
    observation_clip: float = Field(default=10.0, gt=0, le=1000,
                                    description="normalised features are clipped to +- this")

    @field_validator("net_arch")
    @classmethod
    def _layer_sizes(cls, value: list[int]) -> list[int]:
        if any(not 1 <= v <= 4096 for v in value):
            raise ValueError("every layer size must be between 1 and 4096")
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch_fits_a_rollout(cls, value: int, info: ValidationInfo) -> int:
        n_steps, n_envs = info.data.get("n_steps"), info.data.get("n_envs")
        if n_steps is not None and n_envs is not None and value > n_steps * n_envs:
            raise ValueError(f"must be at most nSteps x nEnvs ({n_steps * n_envs}), the decisions of one "
                             "rollout")
        return value


HYPERPARAMETER_MODELS: dict[str, type[CamelModel]] = {
    "xgboost": XGBoostHyperparameters,
    "lightgbm": LightGBMHyperparameters,
    "nhits": NHiTSHyperparameters,
    "patchtst": PatchTSTHyperparameters,
    "ppo": PPOHyperparameters,
}


class HyperparameterError(ValueError):
    """A hyperparameter problem, with the dotted field path and how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


def validate_hyperparameters(algorithm: str, values: dict[str, Any]) -> CamelModel:
    """Parse ``values`` with the algorithm's model; raise HyperparameterError naming the bad key."""
    model = HYPERPARAMETER_MODELS.get(algorithm)
    if model is None:
        known = ", ".join(sorted(HYPERPARAMETER_MODELS))
        raise HyperparameterError("spec.algorithm", f"unknown algorithm {algorithm!r}; use one of: {known}")
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        allowed = ", ".join(sorted(f.alias or n for n, f in model.model_fields.items()))
        if first["type"] == "extra_forbidden":
            hint = f"unknown hyperparameter for {algorithm}; allowed keys: {allowed}"
        else:
            hint = f"{first['msg']} (got {first.get('input')!r})"
        raise HyperparameterError(f"spec.hyperparameters.{key}", hint) from exc
