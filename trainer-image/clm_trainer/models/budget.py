"""Training budgets of the deep models: paper-sized on a GPU, capped on a CPU.

A default N-HiTS, PatchTST or PPO run trains 6 to 11 models (walk-forward folds, the position
layer's inner fits, the refit). With the paper-sized defaults that is fine on a GPU and far too slow
on a CPU (a default PatchTST run did not finish in 10 minutes on 2 cores). So the hyperparameter
``budget`` (``auto`` by default) picks one of two budgets per run:

* ``full``: the hyperparameters' own defaults (paper-sized). ``auto`` picks it for CUDA runs.
* ``cpu``: caps in ``CPU_CAPS`` replace the defaults of the keys the spec leaves out. ``auto``
  picks it for CPU runs (no GPU requested, or none present).

The caps bound the work of every fit, not of a series length: epochs x training windows for the
forecasters (windows evenly spaced over the training rows, so a fit still sees its whole window
of history), decisions for PPO. A default run therefore stays within minutes on 2 cores whatever
the length of the series (bench/README.md has the timings). A key the spec sets is never capped.
The ``Budget`` record (name, reason, what it set) goes into the log, the artifact's config and the
manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from clm_contract.common import CamelModel

from clm_trainer.models.base import DeviceChoice

# snake_case field -> value, per algorithm. Sized with bench/deep.py on the 2-core machine.
CPU_CAPS: dict[str, dict[str, Any]] = {
    "nhits": {"max_epochs": 10, "max_train_windows": 4096},
    "patchtst": {"max_epochs": 6, "max_train_windows": 1536},
    "ppo": {"total_timesteps": 20_000},
}

_H = TypeVar("_H", bound=CamelModel)


@dataclass(frozen=True)
class Budget:
    """Which budget a model trains under, why, and the values it set (camelCase key -> value)."""

    name: str  # "cpu" or "full"
    reason: str
    settings: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "reason": self.reason, "settings": dict(self.settings)}


def _alias(model: type[CamelModel], name: str) -> str:
    alias = model.model_fields[name].alias
    return alias or name


def apply_budget(algorithm: str, hyperparameters: _H, device: DeviceChoice) -> tuple[_H, Budget]:
    """The hyperparameters to train with on ``device`` and the budget record.

    ``hyperparameters.budget``: ``full`` / ``cpu`` force a budget; ``auto`` takes ``full`` on CUDA and
    ``cpu`` otherwise. Under ``cpu`` only keys outside ``model_fields_set`` (not given in the spec) are
    capped; their new values are listed in ``Budget.settings``.
    """
    requested = str(getattr(hyperparameters, "budget", "auto"))
    caps = CPU_CAPS.get(algorithm, {})
    if requested == "full" or (requested == "auto" and device.kind == "cuda") or not caps:
        why = ("hyperparameters.budget is full" if requested == "full"
               else f"training on {device.kind} ({device.reason})")
        return hyperparameters, Budget("full", f"{why}: the paper-sized defaults apply")
    unset = {name: value for name, value in caps.items() if name not in hyperparameters.model_fields_set}
    capped = hyperparameters.model_copy(update=unset)
    settings = {_alias(type(hyperparameters), name): value for name, value in unset.items()}
    kept = sorted(_alias(type(hyperparameters), name) for name in caps if name not in unset)
    why = ("hyperparameters.budget is cpu" if requested == "cpu"
           else f"training on CPU ({device.reason})")
    reason = (f"{why}: defaults capped so a default run finishes in minutes on 2 cores; "
              "set hyperparameters.budget=full (or the capped keys) for the paper-sized defaults")
    if kept:
        reason += f"; kept as the spec sets them: {', '.join(kept)}"
    return capped, Budget("cpu", reason, settings)
