"""Pydantic models of the custom resources and of the operator <-> trainer contract.

The single source of truth for field names, defaults and validation: the CRDs in ``crds/`` are
generated from these models, the operator validates with them and the trainer parses its spec with them.
"""

from clm_operator.api.common import CamelModel, Condition
from clm_operator.api.metrics import BacktestMetrics, Criteria, EvaluationResult
from clm_operator.api.training_job import (
    Algorithm,
    CostsSpec,
    DatasetSpec,
    EvaluationSpec,
    FeaturesSpec,
    ResourcesSpec,
    TargetSpec,
    TrainingJobSpec,
    TriggerReason,
    TriggerSpec,
)

__all__ = [
    "Algorithm",
    "BacktestMetrics",
    "CamelModel",
    "Condition",
    "CostsSpec",
    "Criteria",
    "DatasetSpec",
    "EvaluationResult",
    "EvaluationSpec",
    "FeaturesSpec",
    "ResourcesSpec",
    "TargetSpec",
    "TrainingJobSpec",
    "TriggerReason",
    "TriggerSpec",
]
