"""Which old ModelVersions to delete (Model.spec.retention; docs/architecture.md, "Retention"). Pure.

Only Retired and Failed versions are ever pruned, newest kept first. Never a serving or possibly
serving version (Production, Shadow, Candidate), never one still Training, and never the rollback
target (status.previousProductionVersion) nor the version the spec pins: deleting those would turn a
one-line rollback into a retraining.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from clm_contract.model_version import Stage

from clm_operator.domain.policy import VersionView

PRUNABLE_STAGES = frozenset({Stage.RETIRED, Stage.FAILED})
# Under artifactDeletionPolicy Delete every ModelVersion carries it: its storage prefix is removed before
# the object goes (handlers/model_version.py), however it is deleted.
ARTIFACT_FINALIZER = "clm.dev/artifact-cleanup"
# Under artifactDeletionPolicy Delete the Model carries it: deleting the Model is refused while a version
# serves Production (its artifact would go with it) unless the policy is set to Retain or the Model is
# annotated ALLOW_DELETE_PRODUCTION_ANNOTATION="true" (domain/model_decision.py).
PRODUCTION_GUARD_FINALIZER = "clm.dev/production-guard"
ALLOW_DELETE_PRODUCTION_ANNOTATION = "clm.dev/allow-production-deletion"


def versions_to_delete(versions: Sequence[VersionView], keep: int,
                       protected: Iterable[str | None] = ()) -> list[VersionView]:
    """The prunable versions beyond the newest ``keep`` (returned newest first)."""
    if keep < 0:
        raise ValueError(f"spec.retention.keepVersions must be >= 0 (got {keep})")
    guard = {p for p in protected if p}
    prunable = [v for v in versions if v.stage in PRUNABLE_STAGES and not (guard & {v.version, v.name})]
    prunable.sort(key=lambda v: v.version, reverse=True)
    return prunable[keep:]
