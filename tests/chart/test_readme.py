"""README.md stays accurate: the values, the resource fields and the paths it names exist."""

from __future__ import annotations

import re

import pytest
import yaml
from clm_contract.model import ModelSpec, ModelStatus
from clm_contract.model_version import ModelVersionSpec, ModelVersionStatus
from clm_contract.training_job import TrainingJobSpec
from clm_contract.training_job_status import TrainingJobStatus
from pydantic import BaseModel

from tests.chart.helm import CHART, METRICS, ROOT

README = (ROOT / "README.md").read_text()


def test_every_top_level_value_is_documented() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [key for key in values if f"`{key}" not in README]
    assert missing == [], f"README's configuration table lacks {missing}"


@pytest.mark.parametrize(
    "model",
    [TrainingJobSpec, TrainingJobStatus, ModelVersionSpec, ModelVersionStatus, ModelSpec, ModelStatus],
    ids=lambda m: m.__name__,
)
def test_every_resource_field_is_documented(model: type[BaseModel]) -> None:
    names = [field.alias or name for name, field in model.model_fields.items()]
    missing = [name for name in names if not re.search(rf"`(spec\.|status\.)?{name}`", README)]
    assert missing == [], f"README does not describe {model.__name__} fields {missing}"


def test_every_metric_is_documented() -> None:
    assert [m for m in METRICS if f"`{m}`" not in README] == []


def test_paths_in_the_layout_exist() -> None:
    layout = README.split("## Layout", 1)[1]
    paths = re.findall(r"^([\w./-]+/|[\w.-]+\.(?:yaml|md)|Makefile)\s", layout, re.M)
    assert len(paths) > 10
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert missing == [], f"README's layout names missing paths {missing}"


def test_the_two_commands_exist() -> None:
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert f"\n{script}\n" in README and (ROOT / script).is_file()
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
