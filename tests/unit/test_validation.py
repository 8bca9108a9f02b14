from __future__ import annotations

from typing import Any

from clm_operator.domain.validation import SpecProblem, summarize, validate_training_job_spec


def spec(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"modelName": "btc-xgb", "algorithm": "xgboost",
                            "dataset": {"uri": "builtin:synthetic?kind=planted&seed=7", "symbol": "BTCUSDT"}}
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


def only_problem(body: Any) -> SpecProblem:
    parsed, problems = validate_training_job_spec(body)
    assert parsed is None
    assert len(problems) == 1, problems
    return problems[0]


def test_valid_spec() -> None:
    parsed, problems = validate_training_job_spec(spec())
    assert problems == [] and parsed is not None and parsed.model_name == "btc-xgb"


def test_missing_model_name() -> None:
    problem = only_problem(spec(modelName=None))
    assert problem.field == "spec.modelName"
    assert "required" in problem.message and "name of the Model" in problem.message


def test_unknown_algorithm_lists_the_known_ones() -> None:
    problem = only_problem(spec(algorithm="randomforest"))
    assert problem.field == "spec.algorithm"
    assert "'randomforest'" in problem.message
    assert "xgboost" in problem.message and "patchtst" in problem.message


def test_negative_gpu() -> None:
    problem = only_problem(spec(resources={"gpu": -1}))
    assert problem.field == "spec.resources.gpu"
    assert "greater than or equal to 0" in problem.message and "-1" in problem.message


def test_unknown_hyperparameter_names_the_key_and_the_allowed_ones() -> None:
    problem = only_problem(spec(hyperparameters={"maxDepht": 4}))
    assert problem.field == "spec.hyperparameters.maxDepht"
    assert "unknown hyperparameter" in problem.message and "maxDepth" in problem.message


def test_bad_hyperparameter_value() -> None:
    problem = only_problem(spec(hyperparameters={"maxDepth": 0}))
    assert problem.field == "spec.hyperparameters.maxDepth"
    assert "got 0" in problem.message


def test_embargo_shorter_than_horizon() -> None:
    problem = only_problem(spec(target={"horizonBars": 4}, evaluation={"embargoBars": 2}))
    assert problem.field == "spec.evaluation.embargoBars"
    assert "horizonBars" in problem.message


def test_misspelt_field_is_an_error_not_ignored() -> None:
    problem = only_problem(spec(backofLimit=3))
    assert problem.field == "spec.backofLimit" and "unknown field" in problem.message


def test_list_positions_in_the_path() -> None:
    problem = only_problem(spec(tolerations=[{"operator": "Exists"}, {"effect": "Sometimes"}]))
    assert problem.field == "spec.tolerations[1].effect"


def test_no_spec_at_all() -> None:
    assert only_problem(None).field == "spec"


def test_several_problems_are_summarised() -> None:
    _parsed, problems = validate_training_job_spec(spec(modelName=None, algorithm="nope", seed=-1))
    assert {p.field for p in problems} == {"spec.modelName", "spec.algorithm", "spec.seed"}
    text = summarize(problems, limit=2)
    assert text.count("spec.") == 2 and text.endswith("(and 1 more)")
