"""Which ModelVersions retention prunes (pure)."""

from __future__ import annotations

import pytest
from clm_contract.model_version import Stage
from clm_operator.domain.policy import VersionView
from clm_operator.domain.retention import versions_to_delete

TRAINING, SHADOW, CANDIDATE = Stage.TRAINING, Stage.SHADOW, Stage.CANDIDATE
PRODUCTION, RETIRED, FAILED = Stage.PRODUCTION, Stage.RETIRED, Stage.FAILED


def v(n: int, stage: str) -> VersionView:
    return VersionView(name=f"m-v{n:03d}", version=f"v{n:03d}", stage=stage)


def test_keeps_the_newest_retired_and_failed_and_never_live_ones() -> None:
    versions = [v(1, RETIRED), v(2, FAILED), v(3, RETIRED), v(4, PRODUCTION), v(5, CANDIDATE), v(6, SHADOW),
                v(7, TRAINING), v(8, FAILED), v(0, CANDIDATE)]
    doomed = versions_to_delete(versions, keep=2)
    assert [d.version for d in doomed] == ["v002", "v001"]


def test_keep_zero_prunes_every_prunable_but_the_protected() -> None:
    versions = [v(1, RETIRED), v(2, RETIRED), v(3, FAILED), v(4, PRODUCTION)]
    doomed = versions_to_delete(versions, keep=0, protected=["v002", None, "m-v001"])
    assert [d.version for d in doomed] == ["v003"]


def test_nothing_to_prune_when_within_the_limit() -> None:
    assert versions_to_delete([v(1, RETIRED), v(2, FAILED)], keep=10) == []


def test_negative_keep_is_an_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match="spec.retention.keepVersions"):
        versions_to_delete([], keep=-1)
