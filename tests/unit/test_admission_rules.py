"""The pydantic half of the checks that also run as CEL rules at apply (clm_contract.common).

tests/integration/test_admission.py applies the same kinds of spec to a real API server and asserts
both halves agree; these tests pin the Python side and the rules' construction without a server.
"""

from __future__ import annotations

import random
import re
from decimal import Decimal
from typing import Any

import pytest
from clm_contract.common import CelRule, Line, Text, parse_quantity
from clm_contract.hyperparameters import (
    HYPERPARAMETER_MODELS,
    HyperparameterError,
    hyperparameter_rules,
    hyperparameters_schema,
    validate_hyperparameters,
)
from clm_contract.model import CRON_PATTERN, ModelSpec
from clm_contract.training_job import ResourcesSpec, TrainingJobSpec
from croniter import croniter
from pydantic import TypeAdapter, ValidationError

BASE: dict[str, Any] = {"modelName": "btc", "algorithm": "xgboost",
                        "dataset": {"uri": "builtin:synthetic?kind=planted&seed=7", "symbol": "BTCUSDT"}}


def errors(model: Any, document: dict[str, Any]) -> list[str]:
    try:
        model.model_validate(document)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return []


@pytest.mark.parametrize(("text", "value"), [
    ("1", Decimal(1)), ("500m", Decimal("0.5")), (".5", Decimal("0.5")), ("5.", Decimal(5)),
    ("+1", Decimal(1)), ("2Gi", Decimal(2 * 2**30)), ("1.5Ki", Decimal(1536)), ("1e3", Decimal(1000)),
    ("1E", Decimal(10**18)), ("1E3", Decimal(1000)), ("1n", Decimal("1e-9")), ("-1", Decimal(-1)),
    ("1e999", Decimal("1e999")),
])
def test_quantities_parse_to_their_exact_value(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", [".", "1.2.3", "", "1 ", "1K", "1ki", "1e", "e3", "1.5e3m", "1Kim", "0x10",
                                  "1e99999999"])
def test_non_quantities(text: str) -> None:
    assert parse_quantity(text) is None


@pytest.mark.parametrize(("field", "value", "ok"), [
    ("cpu", "1", True), ("cpu", "500m", True), ("cpu", "4096", True), ("cpu", "0.5", True),
    ("cpu", ".", False), ("cpu", "-1", False), ("cpu", "0", False), ("cpu", "1e999", False),
    ("cpu", "4097", False), ("memory", "2Gi", True), ("memory", "1.5Ki", True), ("memory", "1000", True),
    ("memory", "1.2.3", False), ("memory", "100m", False), ("memory", "1.5", False),
    ("memory", "65Ti", False),
])
def test_resources_are_positive_bounded_quantities(field: str, value: str, ok: bool) -> None:
    found = errors(ResourcesSpec, {field: value})
    assert (found == []) is ok, found
    if not ok:
        assert found[0].startswith(f"{field}: ") and "Kubernetes quantity" in found[0]


@pytest.mark.parametrize("value", ["emoji 😀", "family 👨\u200d👩\u200d👧", "accents é ü ß", "日本語", "a\tb",
                                   "two\nlines"])
def test_free_text_carries_printable_unicode(value: str) -> None:
    assert TypeAdapter(Text).validate_python(value) == value


@pytest.mark.parametrize(("value", "code"), [("rtl \u202e", "U+202E"), ("nul \x00", "U+0000"),
                                             ("esc \x1b[31m", "U+001B"), ("isolate \u2066", "U+2066"),
                                             ("line sep \u2028", "U+2028"), ("c1 \x85", "U+0085")])
def test_free_text_refuses_controls_and_bidi(value: str, code: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(f"found {code}")):
        TypeAdapter(Text).validate_python(value)


def test_a_line_also_refuses_tab_and_newline_and_emoji_is_fine() -> None:
    for value in ("jane\n", "jane\tdoe"):
        with pytest.raises(ValidationError):
            TypeAdapter(Line).validate_python(value)
    assert TypeAdapter(Line).validate_python("jane 😀") == "jane 😀"


def _cel_rule(annotated: Any) -> CelRule:
    schema = TypeAdapter(annotated).json_schema()
    (rule,) = schema["x-kubernetes-validations"]
    return CelRule(rule=rule["rule"], message=rule["message"])


@pytest.mark.parametrize("annotated", [Text, Line])
def test_the_cel_class_forbids_the_same_code_points_as_python(annotated: Any) -> None:
    rule = _cel_rule(annotated).rule
    match = re.fullmatch(r"!self\.matches\(r'(\[.*\])'\)", rule)
    assert match, rule
    # RE2's \x{hex} as Python's \U: the same class, evaluated by Python.
    cel_class = re.compile(re.sub(r"\\x\{([0-9a-f]+)\}", lambda m: f"\\U{int(m.group(1), 16):08x}",
                                  match.group(1)))
    adapter = TypeAdapter(annotated)
    for code in [*range(0x00, 0x300), *range(0x2000, 0x2100), 0x061C, 0xFEFF, 0x1F600]:
        character = chr(code)
        try:
            adapter.validate_python(character)
            python_refuses = False
        except ValidationError:
            python_refuses = True
        assert bool(cel_class.search(character)) == python_refuses, f"U+{code:04X}"


CRONJOB_STYLE = ["0 3 * * 1", "*/15 * * * *", "0 0 1 jan *", "0 9-17 * * MON-FRI", "0 0 * * mon,wed",
                 "0 0 ? * *", "5/15 * * * *", "1-5/2 * * * *", "0 0 * * 7", "@daily", "@hourly", "@yearly",
                 "@Weekly", "00 03 * * *", "0 0 1,15 * *", "0  3 * * 1", " 0 3 * * 1 "]
NOT_CRON = ["61 * * * *", "0 24 * * *", "0 0 0 * *", "0 0 * 13 *", "0 0 * * 8", "*/0 * * * *", "@reboot",
            "@every 1h", "* * * * * *", "* * * *", "", "0 0 L * *", "0 0 * * 1#2", "0 0 R * *", "H 0 * * *",
            "0 0 * * tuesday"]


@pytest.mark.parametrize("schedule", CRONJOB_STYLE)
def test_cronjob_schedules_are_accepted(schedule: str) -> None:
    assert re.match(CRON_PATTERN, schedule) and croniter.is_valid(schedule.strip())
    spec = ModelSpec.model_validate({"schedule": schedule, "template": {k: v for k, v in BASE.items()
                                                                        if k != "modelName"}})
    assert spec.schedule == schedule.strip()


@pytest.mark.parametrize("schedule", NOT_CRON)
def test_everything_else_is_refused_naming_the_field(schedule: str) -> None:
    found = errors(ModelSpec, {"schedule": schedule, "template": {k: v for k, v in BASE.items()
                                                                  if k != "modelName"}})
    assert found and found[0].startswith("schedule: ") and "5 fields" in found[0]


def test_what_the_cron_pattern_accepts_croniter_accepts() -> None:
    """The CRD's rule never admits a schedule the operator's croniter check would then refuse."""
    tokens = ["*", "?", "0", "5", "7", "12", "23", "31", "59", "1-5", "5-1", "*/2", "1-5/2", "mon", "jan",
              "MON-FRI", "jan-mar", "0-7", "1,2", "L", "60", "*/0", "3/4", "0-59/60", "1#2", "W"]
    pattern = re.compile(CRON_PATTERN)
    generator = random.Random(14)
    admitted = 0
    for _ in range(20000):
        schedule = " ".join(generator.choice(tokens) for _ in range(5))
        if pattern.match(schedule):
            admitted += 1
            assert croniter.is_valid(schedule), schedule
    assert admitted > 500  # the corpus exercises the pattern, not only its refusals


def test_each_algorithm_refuses_exactly_the_keys_its_rules_refuse() -> None:
    rules = {rule.field_path: rule for rule in hyperparameter_rules()}
    properties = hyperparameters_schema()["properties"]
    for key in properties:
        takers = [algorithm for algorithm, model in HYPERPARAMETER_MODELS.items()
                  if key in {field.alias for field in model.model_fields.values()}]
        rule = rules.get(f".hyperparameters.{key}")
        if len(takers) == len(HYPERPARAMETER_MODELS):
            assert rule is None, key
            continue
        assert rule is not None and rule.message is not None, key
        assert rule.rule.endswith(f"self.algorithm in [{', '.join(repr(a) for a in takers)}]"), rule.rule
        for algorithm in HYPERPARAMETER_MODELS:
            sample = {"budget": "cpu", "activation": "relu", "loss": "mae", "norm": "layer", "revin": False,
                      "mixedPrecision": False}.get(key, [1] if properties[key].get("type") == "array" else 1)
            try:
                validate_hyperparameters(algorithm, {key: sample})
                refused = False
            except HyperparameterError as exc:
                refused = "unknown hyperparameter" in str(exc)
            assert refused is (algorithm not in takers), (algorithm, key)


def test_embargo_below_the_horizon_names_both_fields_and_the_fix() -> None:
    found = errors(TrainingJobSpec, {**BASE, "target": {"horizonBars": 4}, "evaluation": {"embargoBars": 3}})
    assert found and "evaluation.embargoBars (3)" in found[0] and "target.horizonBars (4)" in found[0]
    assert "leave it out" in found[0]
    assert errors(TrainingJobSpec, {**BASE, "evaluation": {"embargoBars": 23}})  # the default horizon, 24
    at_horizon = {**BASE, "target": {"horizonBars": 4}, "evaluation": {"embargoBars": 4}}
    assert errors(TrainingJobSpec, at_horizon) == []
