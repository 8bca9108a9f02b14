"""TrainingJob spec validation for conditions and Events: the field at fault and how to fix it.

The CRD's schema stops most bad specs at the API server; this is defense in depth and covers what a
schema cannot express (hyperparameters per algorithm, embargoBars vs horizonBars, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clm_contract.hyperparameters import HyperparameterError
from clm_contract.model import ModelSpec, validate_model_name
from clm_contract.training_job import Algorithm, TrainingJobSpec
from pydantic import ValidationError

# A model-level message that starts with a dotted field path ("evaluation.embargoBars (3) must ...").
_LEADING_FIELD = re.compile(r"^([a-z][A-Za-z0-9]*(?:\.[a-z][A-Za-z0-9]*)+)\b")

_FIXES: dict[str, str] = {
    "spec.modelName": "set it to the name of the Model this run trains for (a DNS label)",
    "spec.algorithm": "use one of: " + ", ".join(algorithm.value for algorithm in Algorithm),
    "spec.dataset": "set dataset.uri (s3://..., file://... or builtin:...) and dataset.symbol",
}


@dataclass(frozen=True)
class SpecProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _path(loc: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def problems_from(error: ValidationError) -> list[SpecProblem]:
    """Every error of a TrainingJobSpec validation as (field path, message with the fix)."""
    problems: list[SpecProblem] = []
    for item in error.errors():
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, HyperparameterError):
            problems.append(SpecProblem(cause.field, cause.detail))
            continue
        loc = tuple(item["loc"])
        field = _path(loc)
        kind = item["type"]
        message: str = str(item["msg"]).removeprefix("Value error, ")
        if kind == "missing":
            message = f"required field is missing: {_FIXES.get(field, 'add it')}"
        elif kind == "extra_forbidden":
            message = "unknown field: remove it or check its spelling (field names are camelCase)"
        elif kind.startswith("value_error") or kind == "assertion_error":
            match = _LEADING_FIELD.match(message)
            if match and not loc:
                field = f"spec.{match.group(1)}"
        else:
            got = item.get("input")
            hint = _FIXES.get(field)
            message = f"{message} (got {got!r})" + (f"; {hint}" if hint else "")
        problems.append(SpecProblem(field, message))
    return problems


def validate_training_job_spec(spec: Any) -> tuple[TrainingJobSpec | None, list[SpecProblem]]:
    """(parsed spec, []) when valid, else (None, problems): never raises on bad input."""
    if not isinstance(spec, dict):
        return None, [SpecProblem("spec", "the TrainingJob has no spec object: add one")]
    try:
        return TrainingJobSpec.model_validate(spec), []
    except ValidationError as error:
        return None, problems_from(error)
    except HyperparameterError as error:
        return None, [SpecProblem(error.field, error.detail)]


def summarize(problems: list[SpecProblem], limit: int = 5) -> str:
    """One line for a condition message or an Event: the first problems, then a count."""
    shown = "; ".join(str(problem) for problem in problems[:limit])
    more = len(problems) - limit
    return shown + (f" (and {more} more)" if more > 0 else "")


def model_problems(model: dict[str, Any]) -> list[SpecProblem]:
    """What the CRD schema cannot check on a Model: the name's length, the cron syntax, per-algorithm
    settings of its template."""
    problems: list[SpecProblem] = []
    try:
        validate_model_name(model["metadata"]["name"])
    except ValueError as error:
        problems.append(SpecProblem("metadata.name", str(error)))
    try:
        ModelSpec.model_validate(model.get("spec") or {})
    except ValidationError as error:
        problems += problems_from(error)
    except HyperparameterError as error:
        problems.append(SpecProblem(error.field, error.detail))
    return problems
