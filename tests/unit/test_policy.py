"""The promotion policy and pins, decided purely (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime

from clm_contract.model import PromotionPolicy
from clm_contract.model_version import Stage
from clm_operator.domain import history
from clm_operator.domain.policy import (
    ModelState,
    VersionView,
    decide,
)

TRAINING, SHADOW, CANDIDATE = Stage.TRAINING, Stage.SHADOW, Stage.CANDIDATE
PRODUCTION, RETIRED, FAILED = Stage.PRODUCTION, Stage.RETIRED, Stage.FAILED


def v(version: str, stage: str, score: float | None = None, passed: bool | None = None) -> VersionView:
    return VersionView(name=f"m-{version}", version=version, stage=stage, score=score, passed=passed)


def state(policy: PromotionPolicy, production: str | None = None, pin: str | None = None,
          allow: str | None = None, previous: str | None = None,
          past: frozenset[str] = frozenset()) -> ModelState:
    return ModelState(policy=policy, pin=pin, allow_failed=allow, production=production,
                      previous_production=previous, past_productions=past)


def condition(decision_conditions: list, ctype: str) -> tuple[str, str, str]:
    (found,) = [c for c in decision_conditions if c.type == ctype]
    return found.status, found.reason, found.message


def test_auto_production_promotes_best_passing_version_when_none_serves() -> None:
    versions = [v("v1", CANDIDATE, 40.0, True), v("v2", CANDIDATE, 55.0, True), v("v3", FAILED, 90.0, False)]
    d = decide(state(PromotionPolicy.AUTO_PRODUCTION), versions)
    assert d.production == "v2"
    assert d.stages == {"m-v2": PRODUCTION}
    assert d.candidate == "v1"
    assert d.transition is not None and (d.transition.from_version, d.transition.to_version) == (None, "v2")
    assert d.transition.reason == "Promoted" and not d.transition.rollback
    assert condition(d.conditions, "Ready")[:2] == ("True", "ProductionServing")


def test_auto_production_replaces_only_when_strictly_better() -> None:
    worse = [v("v1", PRODUCTION, 50.0, True), v("v2", CANDIDATE, 50.0, True)]
    d = decide(state(PromotionPolicy.AUTO_PRODUCTION, production="v1"), worse)
    assert d.production == "v1" and d.transition is None and d.stages == {}

    better = [v("v1", PRODUCTION, 50.0, True), v("v2", CANDIDATE, 50.5, True)]
    d = decide(state(PromotionPolicy.AUTO_PRODUCTION, production="v1"), better)
    assert d.production == "v2" and d.previous_production == "v1"
    assert d.stages == {"m-v2": PRODUCTION, "m-v1": RETIRED}


def test_decision_is_idempotent_once_written() -> None:
    d = decide(state(PromotionPolicy.AUTO_PRODUCTION, production="v1"),
               [v("v1", PRODUCTION, 50.0, True), v("v2", CANDIDATE, 70.0, True)])
    assert d.transition is not None
    again = decide(state(PromotionPolicy.AUTO_PRODUCTION, production="v2", previous="v1",
                         past=frozenset({"v1", "v2"})),
                   [v("v1", RETIRED, 50.0, True), v("v2", PRODUCTION, 70.0, True)])
    assert again.transition is None and again.stages == {} and again.production == "v2"


def test_auto_candidate_never_touches_production() -> None:
    d = decide(state(PromotionPolicy.AUTO_CANDIDATE),
               [v("v1", CANDIDATE, 80.0, True), v("v2", CANDIDATE, 60.0, True)])
    assert d.production is None and d.transition is None and d.stages == {}
    assert d.candidate == "v1"
    assert condition(d.conditions, "Ready")[:2] == ("False", "NoProductionVersion")


def test_auto_shadow_makes_exactly_one_shadow() -> None:
    versions = [v("v1", PRODUCTION, 30.0, True), v("v2", SHADOW, 40.0, True), v("v3", CANDIDATE, 60.0, True)]
    d = decide(state(PromotionPolicy.AUTO_SHADOW, production="v1"), versions)
    assert d.shadow == "v3"
    assert d.stages == {"m-v3": SHADOW, "m-v2": CANDIDATE}
    assert d.production == "v1" and d.transition is None


def test_manual_serves_nothing_until_pinned_and_then_the_pin() -> None:
    versions = [v("v1", CANDIDATE, 80.0, True), v("v2", CANDIDATE, 60.0, True)]
    d = decide(state(PromotionPolicy.MANUAL), versions)
    assert d.production is None and d.stages == {}
    assert "spec.productionVersion" in condition(d.conditions, "Ready")[2]

    d = decide(state(PromotionPolicy.MANUAL, pin="m-v2"), versions)  # the ModelVersion name works too
    assert d.production == "v2" and d.stages == {"m-v2": PRODUCTION}
    assert d.transition is not None and d.transition.reason == "Pinned"
    assert d.transition.by == "spec.productionVersion"
    assert condition(d.conditions, "PinAccepted")[:2] == ("True", "PinApplied")


def test_pin_overrides_a_better_automatic_choice() -> None:
    versions = [v("v1", CANDIDATE, 30.0, True), v("v2", CANDIDATE, 90.0, True)]
    d = decide(state(PromotionPolicy.AUTO_PRODUCTION, pin="v1"), versions)
    assert d.production == "v1" and d.stages == {"m-v1": PRODUCTION}


def test_rollback_pin_to_a_retired_version() -> None:
    versions = [v("v1", RETIRED, 50.0, True), v("v2", PRODUCTION, 70.0, True)]
    d = decide(state(PromotionPolicy.AUTO_PRODUCTION, production="v2", previous="v1", pin="v1",
                     past=frozenset({"v1", "v2"})), versions)
    assert d.production == "v1" and d.previous_production == "v2"
    assert d.stages == {"m-v1": PRODUCTION, "m-v2": RETIRED}
    assert d.transition is not None and d.transition.reason == "RolledBack" and d.transition.rollback


def test_failed_pin_is_refused_with_a_condition_and_production_kept() -> None:
    versions = [v("v1", PRODUCTION, 50.0, True), v("v2", FAILED, 10.0, False)]
    d = decide(state(PromotionPolicy.AUTO_PRODUCTION, production="v1", pin="v2"), versions)
    assert d.production == "v1" and d.stages == {} and d.transition is None
    status, reason, message = condition(d.conditions, "PinAccepted")
    assert (status, reason) == ("False", "PinnedVersionFailedCriteria")
    assert "v2" in message and "clm.dev/allow-failed-promotion" in message


def test_failed_pin_with_the_override_annotation_is_applied() -> None:
    versions = [v("v1", PRODUCTION, 50.0, True), v("v2", FAILED, 10.0, False)]
    d = decide(state(PromotionPolicy.AUTO_PRODUCTION, production="v1", pin="v2", allow="v2"), versions)
    assert d.production == "v2" and d.stages == {"m-v2": PRODUCTION, "m-v1": RETIRED}
    assert condition(d.conditions, "PinAccepted")[:2] == ("True", "PinnedFailedVersionOverride")


def test_override_for_another_version_does_not_apply() -> None:
    versions = [v("v2", FAILED, 10.0, False)]
    d = decide(state(PromotionPolicy.MANUAL, pin="v2", allow="v9"), versions)
    assert d.production is None
    assert condition(d.conditions, "PinAccepted")[1] == "PinnedVersionFailedCriteria"


def test_missing_and_training_pins_are_named() -> None:
    d = decide(state(PromotionPolicy.MANUAL, pin="v404"), [v("v1", CANDIDATE, 1.0, True)])
    status, reason, message = condition(d.conditions, "PinAccepted")
    assert (status, reason) == ("False", "PinnedVersionNotFound") and "v404" in message
    d = decide(state(PromotionPolicy.MANUAL, pin="v1"), [v("v1", TRAINING)])
    assert condition(d.conditions, "PinAccepted")[1] == "PinnedVersionNotReady"
    # A run that failed to train has no artifact: even the override cannot make it serve.
    d = decide(state(PromotionPolicy.MANUAL, pin="v1", allow="v1"), [v("v1", FAILED)])
    assert d.production is None
    assert condition(d.conditions, "PinAccepted")[1] == "PinnedVersionNotTrained"


def test_two_production_claims_collapse_to_one() -> None:
    versions = [v("v1", PRODUCTION, 50.0, True), v("v2", PRODUCTION, 60.0, True),
                v("v3", CANDIDATE, 1.0, True)]
    d = decide(state(PromotionPolicy.MANUAL, production="v1", pin="v2"), versions)
    assert d.production == "v2"
    assert d.stages == {"m-v1": RETIRED}
    assert [name for name, stage in d.stages.items() if stage == PRODUCTION] == []


def test_deleted_production_version_means_nothing_serves() -> None:
    d = decide(state(PromotionPolicy.AUTO_CANDIDATE, production="v1"), [v("v2", CANDIDATE, 9.0, True)])
    assert d.production is None
    assert condition(d.conditions, "Ready")[0] == "False"


def test_history_is_bounded_and_not_duplicated() -> None:
    from clm_operator.domain.policy import Transition

    t = datetime(2026, 1, 1, tzinfo=UTC)
    items: list[dict[str, object]] = []
    for i in range(60):
        items = history.append(items, history.entry_for(
            Transition(f"v{i}", f"v{i + 1}", "Promoted", "policy AutoProduction", False), t), limit=50)
    assert len(items) == 50 and items[-1]["to"] == "v60" and items[0]["from"] == "v10"
    again = history.append(items, history.entry_for(
        Transition("v59", "v60", "Promoted", "policy AutoProduction", False), t), limit=50)
    assert again == items
    assert "v60" in history.past_productions(items)


def test_example_models_are_valid() -> None:
    from pathlib import Path

    import yaml
    from clm_contract.model import ModelSpec, validate_model_name

    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("model-*.yaml"))
    assert examples, "examples/model-*.yaml missing"
    for path in examples:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Model":
                validate_model_name(doc["metadata"]["name"])
                spec = ModelSpec.model_validate(doc["spec"])
                assert spec.promotion.policy == PromotionPolicy.AUTO_PRODUCTION


def test_pin_author_is_the_latest_manager_of_the_pin() -> None:
    fields = [
        {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-03-01T00:00:00Z",
         "fieldsV1": {"f:spec": {"f:productionVersion": {}, "f:template": {}}}},
        {"manager": "argocd-controller", "operation": "Apply", "time": "2026-03-02T00:00:00Z",
         "fieldsV1": {"f:spec": {"f:productionVersion": {}}}},
        {"manager": "clm-operator", "operation": "Update", "time": "2026-03-03T00:00:00Z",
         "fieldsV1": {"f:status": {"f:productionVersion": {}}}, "subresource": "status"},
    ]
    assert history.pin_author(fields) == "argocd-controller"
    assert history.pin_author(None) is None
    assert history.pin_author(fields[2:]) is None
