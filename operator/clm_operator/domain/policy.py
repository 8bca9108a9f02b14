"""Which version serves production, and what every other version's stage becomes.

The rules are in docs/architecture.md ("Which version serves production").

Pure: the handler reads the Model and its ModelVersions, calls ``decide`` and writes what it returns.
One source of truth: ``spec.productionVersion`` when set (GitOps pin), else the policy's choice, which
lives in the Model's status only. The result is idempotent: deciding again on the written state changes
nothing, so a reconcile repeated after a crash cannot promote twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from clm_contract.conditions import ModelCondition, Reason
from clm_contract.model import PromotionPolicy
from clm_contract.model_version import Stage

from clm_operator.domain.conditions import FALSE, TRUE, ConditionChange


@dataclass(frozen=True)
class VersionView:
    """What the policy needs to know about one ModelVersion."""

    name: str  # metadata.name, "<model>-<version>"
    version: str  # sortable: a larger string is a newer version
    stage: str
    score: float | None = None
    passed: bool | None = None  # None while not evaluated

    def matches(self, ref: str) -> bool:
        """A pin may name the version ("v2026...") or the ModelVersion ("<model>-v2026...")."""
        return ref in (self.version, self.name)


@dataclass(frozen=True)
class Transition:
    """A change of the production version, for status.history, the Event and the counters."""

    from_version: str | None
    to_version: str
    reason: str  # Reason.PROMOTED | PINNED | ROLLED_BACK
    by: str
    rollback: bool


@dataclass
class Decision:
    production: str | None
    previous_production: str | None
    candidate: str | None
    shadow: str | None
    stages: dict[str, str] = field(default_factory=dict)  # ModelVersion name -> desired stage (changes only)
    transition: Transition | None = None
    conditions: list[ConditionChange] = field(default_factory=list)


@dataclass(frozen=True)
class ModelState:
    policy: PromotionPolicy | str
    pin: str | None
    allow_failed: str | None  # value of the clm.dev/allow-failed-promotion annotation
    production: str | None  # status.productionVersion (a version string)
    previous_production: str | None
    past_productions: frozenset[str] = frozenset()  # every "to" in status.history


def _eligible(v: VersionView) -> bool:
    """May the policy choose this version on its own? Passed its criteria and not retired."""
    return v.passed is True and v.stage in (Stage.CANDIDATE, Stage.SHADOW, Stage.PRODUCTION)


def _best(versions: Sequence[VersionView]) -> VersionView | None:
    """Highest promotion score; the newer version wins a tie (it saw more recent data)."""
    ranked = sorted(versions, key=lambda v: (v.score if v.score is not None else -1.0, v.version))
    return ranked[-1] if ranked else None


def _find(versions: Sequence[VersionView], ref: str | None) -> VersionView | None:
    if ref is None:
        return None
    for v in versions:
        if v.matches(ref):
            return v
    return None


def _pin_target(state: ModelState, versions: Sequence[VersionView],
                conditions: list[ConditionChange]) -> VersionView | None:
    """The pinned version when it may serve; otherwise None and a PinAccepted=False condition."""
    assert state.pin is not None
    pinned = _find(versions, state.pin)
    if pinned is None:
        conditions.append(ConditionChange(
            ModelCondition.PIN_ACCEPTED, FALSE, Reason.PINNED_VERSION_NOT_FOUND,
            f"spec.productionVersion {state.pin!r} names no ModelVersion of this Model: use a version from "
            f"'kubectl get mv -l clm.dev/model=<model>' or remove the pin"))
        return None
    if pinned.stage == Stage.TRAINING:
        conditions.append(ConditionChange(
            ModelCondition.PIN_ACCEPTED, FALSE, Reason.PINNED_VERSION_NOT_READY,
            f"version {pinned.version} is still training; it will serve once it has been evaluated"))
        return None
    if pinned.stage == Stage.FAILED and pinned.passed is None:
        conditions.append(ConditionChange(
            ModelCondition.PIN_ACCEPTED, FALSE, Reason.PINNED_VERSION_NOT_TRAINED,
            f"version {pinned.version} has no model: its training failed; pin a trained version"))
        return None
    failed = pinned.stage == Stage.FAILED or pinned.passed is False
    if failed and state.allow_failed not in (pinned.version, pinned.name):
        conditions.append(ConditionChange(
            ModelCondition.PIN_ACCEPTED, FALSE, Reason.PINNED_VERSION_FAILED_CRITERIA,
            f"version {pinned.version} failed its promotion criteria and is not promoted; to serve it anyway "
            f"annotate the Model with clm.dev/allow-failed-promotion: \"{pinned.version}\""))
        return None
    reason = Reason.PINNED_FAILED_VERSION_OVERRIDE if failed else Reason.PIN_APPLIED
    conditions.append(ConditionChange(ModelCondition.PIN_ACCEPTED, TRUE, reason,
                                      f"version {pinned.version} serves production (pinned)"))
    return pinned


def decide(state: ModelState, versions: Sequence[VersionView]) -> Decision:
    conditions: list[ConditionChange] = []
    current = _find(versions, state.production)
    target: VersionView | None = current
    reason, by = Reason.PROMOTED, f"policy {state.policy}"

    if state.pin is not None:
        pinned = _pin_target(state, versions, conditions)
        if pinned is not None:
            target, reason, by = pinned, Reason.PINNED, "spec.productionVersion"
    elif state.policy == PromotionPolicy.AUTO_PRODUCTION:
        best = _best([v for v in versions if _eligible(v)])
        current_score = current.score if current is not None and current.score is not None else -1.0
        # Strictly better only: an equal score never churns production.
        if best is not None and (current is None or (best.score or 0.0) > current_score):
            target = best

    transition: Transition | None = None
    previous = state.previous_production
    if target is not None and (current is None or target.version != current.version):
        # A rollback goes back to an older version that served before; moving forward again to a newer one
        # (re-promoting it after a rollback) is a promotion, even though it too served before.
        served = target.version in state.past_productions or target.version == state.previous_production
        replaced = current.version if current is not None else state.production
        rollback = served and (replaced is None or target.version < replaced)
        if rollback and reason == Reason.PINNED:
            reason = Reason.ROLLED_BACK
        elif served and reason == Reason.PINNED:
            reason = Reason.PROMOTED
        transition = Transition(
            from_version=current.version if current is not None else state.production,
            to_version=target.version, reason=reason, by=by,
            rollback=rollback and reason == Reason.ROLLED_BACK)
        previous = transition.from_version or previous

    # When the recorded production's ModelVersion was deleted, target is None: nothing is serving.
    production = target.version if target is not None else None

    stages: dict[str, str] = {}
    for v in versions:
        if target is not None and v.version == target.version:
            if v.stage != Stage.PRODUCTION:
                stages[v.name] = Stage.PRODUCTION
        elif v.stage == Stage.PRODUCTION:
            # Exactly one Production per Model: whatever else claims it has been replaced.
            stages[v.name] = Stage.RETIRED

    rest = [v for v in versions if _eligible(v) and (target is None or v.version != target.version)
            and v.name not in stages]
    best_rest = _best(rest)
    shadow: str | None = None
    if state.policy == PromotionPolicy.AUTO_SHADOW and best_rest is not None:
        shadow = best_rest.version
    for v in rest:
        want = Stage.SHADOW if v.version == shadow else Stage.CANDIDATE
        if v.stage != want:
            stages[v.name] = want
    candidate = best_rest.version if best_rest is not None else None

    if production is not None:
        conditions.append(ConditionChange(ModelCondition.READY, TRUE, Reason.PRODUCTION_SERVING,
                                          f"version {production} serves production"))
    elif state.policy == PromotionPolicy.MANUAL or state.pin is not None:
        conditions.append(ConditionChange(
            ModelCondition.READY, FALSE, Reason.NO_PRODUCTION_VERSION,
            "no version serves production: set spec.productionVersion to a version that passed its criteria"))
    else:
        conditions.append(ConditionChange(
            ModelCondition.READY, FALSE, Reason.NO_PRODUCTION_VERSION,
            f"no version serves production yet (policy {state.policy}): "
            "none has passed its promotion criteria, or pin one with spec.productionVersion"))
    return Decision(production=production, previous_production=previous, candidate=candidate,
                    shadow=shadow, stages=stages, transition=transition, conditions=conditions)
