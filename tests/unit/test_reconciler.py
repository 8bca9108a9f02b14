"""The one error policy of every reconcile (handlers/reconciler.py), the routes table and the configuration
parsed once (domain/config.py)."""

from __future__ import annotations

import json

import kopf
import pytest
from clm_operator import handlers
from clm_operator.domain.conditions import ConditionChange
from clm_operator.domain.config import ConfigError, OperatorConfig
from clm_operator.handlers import common
from clm_operator.handlers.reconciler import Context, Target, backoff, run
from clm_operator.k8s import Kube, KubeError
from kubernetes import client
from prometheus_client import REGISTRY

FORBIDDEN_BODY = json.dumps(
    {
        "message": 'trainingjobs.clm.dev "r" is forbidden: User "system:serviceaccount:'
        'clm-system:clm-operator" cannot patch resource "trainingjobs/status"'
    }
)


@pytest.fixture(autouse=True)
def runtime() -> None:
    # A client that is never called: the reconciles below raise before any request.
    common.install(OperatorConfig.from_env({}), kube=Kube(client.Configuration(host="http://127.0.0.1:9")))


def errors(kind: str, reason: str) -> float:
    return REGISTRY.get_sample_value("clm_reconcile_errors_total", {"kind": kind, "reason": reason}) or 0.0


async def test_forbidden_becomes_a_condition_naming_the_call_and_a_metric() -> None:
    reported: list[ConditionChange] = []

    async def reconcile(ctx: Context) -> None:
        raise KubeError(
            403,
            "Forbidden",
            FORBIDDEN_BODY,
            method="PATCH",
            path="/apis/clm.dev/v1alpha1/namespaces/ns/trainingjobs/r/status",
        )

    async def report(ctx: Context, condition: ConditionChange) -> None:
        reported.append(condition)

    before = errors("TrainingJob", "Forbidden")
    await run(Target("TrainingJob", reconcile, report), "ns", "r")  # no raise: not a crash
    assert errors("TrainingJob", "Forbidden") == before + 1
    (condition,) = reported
    assert (condition.type, condition.status, condition.reason) == ("Permitted", "False", "Forbidden")
    assert "PATCH /apis/clm.dev/v1alpha1/namespaces/ns/trainingjobs/r/status" in condition.message
    assert (
        'cannot patch resource "trainingjobs/status"' in condition.message
        and "rbac.yaml" in condition.message
    )


async def test_a_conflict_is_retried_soon_and_anything_else_with_backoff() -> None:
    async def conflict(ctx: Context) -> None:
        raise KubeError(409, "Conflict", '{"message": "the object has been modified"}')

    async def unavailable(ctx: Context) -> None:
        raise KubeError(503, "Service Unavailable", "")

    async def bug(ctx: Context) -> None:
        raise KeyError("status")

    with pytest.raises(kopf.TemporaryError) as soon:
        await run(Target("Model", conflict), "ns", "m")
    assert soon.value.delay == 1.0
    with pytest.raises(kopf.TemporaryError) as later:
        await run(Target("Model", unavailable), "ns", "m", retry=3)
    assert later.value.delay == backoff(3) == 8.0
    before = errors("ModelVersion", "KeyError")
    with pytest.raises(kopf.TemporaryError, match="KeyError"):
        await run(Target("ModelVersion", bug), "ns", "v")
    assert errors("ModelVersion", "KeyError") == before + 1
    assert backoff(20) == 60.0


def test_every_route_registers_with_the_configured_intervals() -> None:
    config = OperatorConfig.from_env({"CLM_RESYNC_SECONDS": "3", "CLM_SCHEDULE_INTERVAL_SECONDS": "7"})
    registry = handlers.register(config, registry=kopf.OperatorRegistry())
    timers = {h.id: h.interval for h in registry._spawning.get_all_handlers()}
    assert timers == {"trainingjobs.timer.training_job_changed": 3.0, "models.timer.model_tick": 7.0}
    watched = {h.id for h in registry._watching.get_all_handlers()}
    assert watched == {
        "jobs.event.run_object_event",
        "pods.event.run_object_event",
        "modelversions.event.model_version_event",
        "models.event.model_event",
        "trainingjobs.event.training_job_event",
    }
    changing = {h.id for h in registry._changing.get_all_handlers()}
    assert len(changing) == 2 and len(list(registry._activities.get_all_handlers())) == 2
    assert len(handlers.ROUTES) == len(timers) + len(watched) + len(changing) + 2
    assert common.current().config.resync_seconds == 3.0


def test_flags_win_over_the_environment_and_bad_values_name_the_variable() -> None:
    config = OperatorConfig.from_env(
        {
            "CLM_RESYNC_SECONDS": "10",
            "CLM_WATCH_NAMESPACES": "a, b,,",
            "CLM_S3_SECRET_NAME": "",
            "CLM_WEBHOOK_PORT": "",
        }
    )
    assert config.with_flags(resync_seconds=2.5, log_level=None).resync_seconds == 2.5
    assert config.watch_namespaces == ("a", "b") and config.s3_secret_name is None
    assert config.listen_port(9000) == 9000
    with pytest.raises(ConfigError, match="resync_seconds"):
        config.with_flags(resync_seconds=-1.0)
    with pytest.raises(ConfigError, match="CLM_SCHEDULE_INTERVAL_SECONDS"):
        OperatorConfig.from_env({"CLM_SCHEDULE_INTERVAL_SECONDS": "0"})
    with pytest.raises(ConfigError, match="CLM_IMAGE_PULL_POLICY"):
        OperatorConfig.from_env({"CLM_IMAGE_PULL_POLICY": "Sometimes"})
