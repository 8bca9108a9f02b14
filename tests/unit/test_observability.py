from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from clm_operator.observability import metrics as m
from clm_operator.observability.events import event_body
from clm_operator.observability.logging import JsonFormatter, redact
from prometheus_client import REGISTRY


def value(name: str, **labels: str) -> float:
    found = REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else float(found)


def test_a_reconcile_counts_its_outcome_once() -> None:
    before_ok = value("clm_reconciles_total", kind="Model", result="success")
    before_error = value("clm_reconciles_total", kind="Model", result="error")
    with m.reconcile("Model"):
        pass
    for first_attempt in (True, False, False):  # one failure retried twice by kopf
        with pytest.raises(KeyError), m.reconcile("Model", count_error=first_attempt):
            raise KeyError("x")
    assert value("clm_reconciles_total", kind="Model", result="success") == before_ok + 1
    assert value("clm_reconciles_total", kind="Model", result="error") == before_error + 1
    assert value("clm_reconcile_errors_total", kind="Model", reason="KeyError") >= 3
    assert value("clm_reconcile_duration_seconds_count", kind="Model") >= 4


def test_phase_gauge_follows_the_objects() -> None:
    m.observe_training_job("gauge-ns", "a", "Running")
    m.observe_training_job("gauge-ns", "b", "Running")
    assert value("clm_training_jobs", namespace="gauge-ns", phase="Running") == 2
    m.observe_training_job("gauge-ns", "a", "Succeeded")
    m.forget_training_job("gauge-ns", "b")
    assert value("clm_training_jobs", namespace="gauge-ns", phase="Running") == 0
    assert value("clm_training_jobs", namespace="gauge-ns", phase="Succeeded") == 1
    m.observe_model_version("gauge-ns", "mv1", "mdl", "Candidate")
    m.observe_model_version("gauge-ns", "mv1", "mdl", "Production")
    assert value("clm_model_versions", namespace="gauge-ns", model="mdl", stage="Candidate") == 0
    assert value("clm_model_versions", namespace="gauge-ns", model="mdl", stage="Production") == 1


def test_logs_are_json_and_never_carry_secrets() -> None:
    record = logging.LogRecord("clm", logging.INFO, __file__, 1, "connect with AWS_SECRET_ACCESS_KEY=hunter2",
                               None, None)
    record.env = {"AWS_SECRET_ACCESS_KEY": "hunter2", "region": "eu-west-1"}
    line = json.loads(JsonFormatter().format(record))
    assert "hunter2" not in json.dumps(line)
    assert line["env"]["region"] == "eu-west-1" and line["level"] == "info"
    masked = redact({"token": "t", "list": [{"password": "p"}]})
    assert masked == {"token": "***", "list": [{"password": "***"}]}


def test_event_names_are_deterministic_so_repeats_deduplicate() -> None:
    obj = {"apiVersion": "clm.dev/v1alpha1", "kind": "TrainingJob",
           "metadata": {"name": "run", "namespace": "ns", "uid": "u1"}}
    first = event_body(obj, "Warning", "InvalidSpec", "spec.modelName: required")
    again = event_body(obj, "Warning", "InvalidSpec", "spec.modelName: required")
    other = event_body(obj, "Warning", "InvalidSpec", "spec.algorithm: unknown")
    assert first["metadata"]["name"] == again["metadata"]["name"] != other["metadata"]["name"]
    assert first["involvedObject"]["uid"] == "u1" and first["type"] == "Warning"
    assert len(event_body(obj, "Normal", "R", "x" * 5000)["message"]) <= 1024


def test_run_refuses_a_bad_configuration_with_the_variable_named() -> None:
    result = subprocess.run([sys.executable, "-m", "clm_operator.cli", "run", "--metrics-port", "0",
                             "--health-port", "0", "--webhook-port", "0"],
                            env={"CLM_S3_PATH_STYLE": "sometimes", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "CLM_S3_PATH_STYLE" in result.stderr and "true or false" in result.stderr
