"""clm_contract: what the operator and the trainer agree on, and nothing else.

Pydantic models of the custom resources and of the operator <-> trainer contract, the CRD generator,
the promotion criteria, and the storage layout with its reader. The single source of truth for field
names, defaults and validation: the CRDs in ``crds/`` are generated from these models, the operator
validates with them and the trainer parses its spec with them. Both packages depend on this one and
not on each other; it imports neither kopf nor Kubernetes (tests/unit/test_package_isolation.py).
"""

GROUP = "clm.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# ruff: noqa: E402 - the constants above come first: every module here may import them
from clm_contract.common import CamelModel, Condition
from clm_contract.metrics import BacktestMetrics, Criteria, EvaluationResult
from clm_contract.training_job import (
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
    "API_VERSION",
    "GROUP",
    "VERSION",
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
