"""Algorithm registry: ``spec.algorithm`` -> the class implementing models.base.ModelTrainer.

Entries are "module:Class" strings imported on first use, so a tree run never imports torch (and the
operator can list the algorithms without the trainer's ML stack).
"""

from __future__ import annotations

import importlib

from clm_trainer.models.base import ModelFactory

REGISTRY: dict[str, str] = {
    "xgboost": "clm_trainer.models.trees:XGBoostTrainer",
    "lightgbm": "clm_trainer.models.trees:LightGBMTrainer",
    "nhits": "clm_trainer.models.nhits:NHiTSTrainer",
    "patchtst": "clm_trainer.models.patchtst:PatchTSTTrainer",
    "ppo": "clm_trainer.models.ppo:PPOTrainer",
}


class UnknownAlgorithmError(ValueError):
    """The algorithm is not registered, or its implementation cannot be imported here (permanent)."""

    field = "spec.algorithm"

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(f"{message}; fix: {fix}")
        self.fix = fix


def trainer_factory(algorithm: str) -> ModelFactory:
    """The class for ``algorithm``: call it with (hyperparameters, seed, device) for a fresh model."""
    target = REGISTRY.get(algorithm)
    if target is None:
        raise UnknownAlgorithmError(f"unknown algorithm {algorithm!r}",
                                    f"use one of: {', '.join(sorted(REGISTRY))}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownAlgorithmError(f"algorithm {algorithm!r} is not available in this image ({exc})",
                                    "use a trainer image built with its dependencies") from exc
    factory: ModelFactory = getattr(module, class_name)
    return factory
