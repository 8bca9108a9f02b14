"""Hyperparameters, validated per algorithm: an unknown key or a bad value is an error naming it.

These models validate ``spec.hyperparameters`` in the operator before any Job is created and again in
the trainer. Keys are camelCase like every other field of a Kubernetes resource. In the CRD the field is
the union of every algorithm's keys (``hyperparameters_schema``: a misspelt key is an unknown field),
and one CEL rule per algorithm (``hyperparameter_rules``) refuses at apply the keys of another
algorithm; value bounds that differ between algorithms are checked here only.

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

from clm_contract.common import CamelModel, CelRule

_TREES = "boosting rounds (trees)"
_ROWS = "share of the training rows each tree samples"
_COLUMNS = "share of the features each tree samples"
_L2 = "L2 regularisation of the leaf weights"
_L1 = "L1 regularisation of the leaf weights"
_STEP = "step size (shrinkage of each tree, or the optimiser's learning rate)"


_EARLY_STOPPING = (
    "0 (default): always nEstimators trees; N > 0: stop adding trees when the loss (log loss for target "
    "kind sign, squared error for return) on a purged hold-out of the training rows (their last 20 %) has "
    "not improved for N rounds, then refit on all training rows with the best count (nEstimators is then "
    "the maximum)")

# Tree defaults: few, shallow, strongly shrunk trees. Labels over overlapping horizons are few
# independent samples, and most default features carry no signal: measured on the default planted
# series behind the default position layer (10 seeds, xgboost), 30 trees of depth 3 passed the default
# criteria in 9 of 10 seeds, 15 trees in 3, 60 in 5, 200 of depth 4 in 2; early stopping on the log loss
# of a hold-out (200 at most, 20 rounds of patience) in 5, which is why it is off by default.


class XGBoostHyperparameters(CamelModel):
    n_estimators: int = Field(default=30, ge=1, le=10000, description=_TREES)
    max_depth: int = Field(default=3, ge=1, le=16, description="maximum depth of a tree (lightgbm: -1 "
                                                               "means no limit)")
    learning_rate: float = Field(default=0.05, gt=0, le=1, description=_STEP)
    subsample: float = Field(default=0.8, gt=0, le=1, description=_ROWS)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1, description=_COLUMNS)
    min_child_weight: float = Field(default=1.0, ge=0, description="minimum hessian sum in a leaf")
    reg_lambda: float = Field(default=1.0, ge=0, description=_L2)
    reg_alpha: float = Field(default=0.0, ge=0, description=_L1)
    gamma: float = Field(default=0.0, ge=0, description="xgboost: minimum loss reduction to split a leaf; "
                                                         "ppo: discount per decision")
    early_stopping_rounds: int = Field(default=0, ge=0, le=10000, description=_EARLY_STOPPING)


class LightGBMHyperparameters(CamelModel):
    n_estimators: int = Field(default=30, ge=1, le=10000, description=_TREES)
    num_leaves: int = Field(default=7, ge=2, le=4096, description="maximum leaves of a tree")
    max_depth: int = Field(default=-1, ge=-1, le=64, description="maximum depth of a tree (lightgbm: -1 "
                                                                 "means no limit)")
    learning_rate: float = Field(default=0.05, gt=0, le=1, description=_STEP)
    subsample: float = Field(default=0.8, gt=0, le=1, description=_ROWS)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1, description=_COLUMNS)
    min_child_samples: int = Field(default=20, ge=1, description="minimum training rows in a leaf")
    reg_lambda: float = Field(default=0.0, ge=0, description=_L2)
    reg_alpha: float = Field(default=0.0, ge=0, description=_L1)
    early_stopping_rounds: int = Field(default=0, ge=0, le=10000, description=_EARLY_STOPPING)


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

    max_epochs: int = Field(default=30, ge=1, le=10000, description="passes over the training windows")
    batch_size: int = Field(default=256, ge=1, le=65536,
                            description="windows per gradient step (ppo: decisions per minibatch)")
    learning_rate: float = Field(default=1e-3, gt=0, le=1, description=_STEP)
    patience: int = Field(default=5, ge=1, le=1000, description="early-stopping patience in epochs")
    validation_fraction: float = Field(default=0.2, gt=0, lt=0.9,
                                       description="last share of the training windows (time order) used "
                                                   "for early stopping")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay")
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
    pool_kernel_sizes: list[int] = Field(default_factory=lambda: [2, 2, 1], min_length=1, max_length=8,
                                         description="max-pooling kernel of each stack's input")
    freq_downsample: list[int] = Field(default_factory=lambda: [4, 2, 1], min_length=1, max_length=8,
                                       description="per stack: forecast knots = horizon / this (one entry "
                                                   "per poolKernelSizes entry)")
    blocks_per_stack: int = Field(default=1, ge=1, le=8, description="MLP blocks in each stack")
    mlp_units: int = Field(default=512, ge=4, le=4096, description="units of each hidden layer of a block")
    mlp_layers: int = Field(default=2, ge=1, le=8, description="hidden layers of each block")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="dropout probability in the network")

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
    patch_len: int = Field(default=16, ge=1, le=512, description="bars per patch (<= inputSize)")
    stride: int = Field(default=8, ge=1, le=512, description="bars between the starts of two patches")
    d_model: int = Field(default=64, ge=4, le=1024, description="width of the transformer")
    n_heads: int = Field(default=4, ge=1, le=64, description="attention heads (must divide dModel)")
    n_layers: int = Field(default=3, ge=1, le=12, description="encoder layers")
    d_ff: int = Field(default=128, ge=4, le=8192, description="width of the feed-forward layers")
    dropout: float = Field(default=0.2, ge=0, lt=1, description="dropout probability in the network")
    head_dropout: float = Field(default=0.0, ge=0, lt=1, description="dropout before the forecast head")
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
    learning_rate: float = Field(default=3e-4, gt=0, le=1, description=_STEP)
    n_envs: int = Field(default=8, ge=1, le=256,
                        description="copies of the training window stepped together, each with its own "
                                    "phase of the decision grid")
    n_steps: int = Field(default=128, ge=2, le=65536, description="decisions per environment per rollout")
    batch_size: int = Field(default=256, ge=2, le=1_000_000,
                            description="windows per gradient step (ppo: decisions per minibatch)")
    n_epochs: int = Field(default=10, ge=1, le=1000, description="optimisation passes over each rollout")
    gamma: float = Field(default=0.9, ge=0, le=1, description="xgboost: minimum loss reduction to split a "
                                                              "leaf; ppo: discount per decision")
    gae_lambda: float = Field(default=0.95, ge=0, le=1, description="GAE bias/variance trade-off")
    clip_range: float = Field(default=0.2, gt=0, le=1, description="PPO's policy-ratio clip")
    ent_coef: float = Field(default=0.0, ge=0, le=1, description="entropy bonus")
    vf_coef: float = Field(default=0.5, ge=0, le=10, description="weight of the value loss")
    max_grad_norm: float = Field(default=0.5, gt=0, le=100, description="gradient clipping norm")
    net_arch: list[int] = Field(default_factory=lambda: [64, 64], min_length=1, max_length=8,
                                description="hidden layer sizes of the policy and of the value network")
    activation: Literal["tanh", "relu"] = Field(default="tanh", description="activation of the hidden "
                                                                           "layers: tanh | relu")
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


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems")


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` as X: an absent key and a null one mean the same (the API server prunes nulls)."""
    options = [option for option in schema.get("anyOf", ()) if option.get("type") != "null"]
    if len(options) != 1:
        return schema
    return {**{k: v for k, v in schema.items() if k != "anyOf"}, **options[0]}


def _shape(schema: dict[str, Any]) -> dict[str, Any]:
    """A key's schema without what may differ between algorithms (bounds, description, default)."""
    return {k: v for k, v in schema.items() if k not in (*_BOUNDS, "description", "default", "title")}


def hyperparameters_schema() -> dict[str, Any]:
    """The JSON schema of ``spec.hyperparameters``: every key of every algorithm, typed, described with
    the algorithms that take it; a bound is kept where all of them agree on it."""
    keys: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for algorithm, model in HYPERPARAMETER_MODELS.items():
        for key, schema in model.model_json_schema(by_alias=True, mode="validation")["properties"].items():
            keys.setdefault(key, []).append((algorithm, _non_null(schema)))
    properties: dict[str, Any] = {}
    for key, found in sorted(keys.items()):
        first = found[0][1]
        if any(_shape(schema) != _shape(first) for _, schema in found):
            raise TypeError(f"hyperparameter {key} has a different type per algorithm; rename it")
        merged = _shape(first)
        for bound in _BOUNDS:
            if all(bound in schema and schema[bound] == first[bound] for _, schema in found):
                merged[bound] = first[bound]
        algorithms = ", ".join(algorithm for algorithm, _ in found)
        descriptions = {schema["description"] for _, schema in found}
        merged["description"] = (
            f"{first['description']} ({algorithms})" if len(descriptions) == 1
            else "; ".join(f"{algorithm}: {schema['description']}" for algorithm, schema in found))
        properties[key] = merged
    return {"type": "object", "properties": properties,
            "description": "per algorithm (contract/clm_contract/hyperparameters.py); an absent key takes "
                           "the algorithm's default"}


def hyperparameter_rules() -> tuple[CelRule, ...]:
    """CEL rules for a TrainingJob spec (or a Model's template): no key of another algorithm.

    One rule per key that not every algorithm takes, so that the error names the key (``fieldPath``)
    with a constant message: a message built from the object (``messageExpression``) costs more than
    the API server's budget for a spec with 50 possible keys.
    """
    takers: dict[str, list[str]] = {}
    for algorithm, model in HYPERPARAMETER_MODELS.items():
        for name, field in model.model_fields.items():
            takers.setdefault(field.alias or name, []).append(algorithm)
    rules = []
    for key, algorithms in sorted(takers.items()):
        if len(algorithms) == len(HYPERPARAMETER_MODELS):
            continue
        listed = ", ".join(f"'{algorithm}'" for algorithm in algorithms)
        rules.append(CelRule(
            rule=(f"!has(self.hyperparameters) || !has(self.hyperparameters.{key}) "
                  f"|| self.algorithm in [{listed}]"),
            message=(f"is a hyperparameter of {', '.join(algorithms)} only, not of spec.algorithm: remove "
                     "it or change the algorithm"),
            field_path=f".hyperparameters.{key}",
        ))
    return tuple(rules)
