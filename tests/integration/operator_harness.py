"""Helpers for the operator integration tests: a sandbox whose operator re-checks unfinished runs every
second, and small accessors."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from clm_operator.sandbox.cluster import Sandbox, wait_for

GROUP, VERSION = "clm.dev", "v1alpha1"
FINISHED = ("Succeeded", "Failed")


class OperatorSandbox:
    def __init__(self, sandbox: Sandbox, metrics_port: int) -> None:
        self.sb = sandbox
        self.metrics_port = metrics_port

    def kubectl(self, namespace: str, *args: str, input: str | None = None) -> Any:
        return self.sb.kubectl(*args, input=input, namespace=namespace, timeout=60)

    def apply(self, namespace: str, document: dict[str, Any]) -> Any:
        return self.kubectl(namespace, "apply", "-f", "-", input=json.dumps(document))

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        group, version = (GROUP, VERSION) if plural in ("trainingjobs", "modelversions", "models") else (
            ("batch", "v1") if plural == "jobs" else ("", "v1"))
        found: dict[str, Any] | None = self.sb.get(group, version, plural, namespace, name)
        return found

    def objects(self, plural: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        group, version = (GROUP, VERSION) if plural in ("trainingjobs", "modelversions", "models") else (
            ("batch", "v1") if plural == "jobs" else ("", "v1"))
        items: list[dict[str, Any]] = self.sb.list_objects(group, version, plural, namespace, selector)
        return items

    def wait_finished(self, namespace: str, name: str, timeout: float = 180.0) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            tj = self.get("trainingjobs", namespace, name)
            return tj if tj and (tj.get("status") or {}).get("phase") in FINISHED else None

        def explain() -> str:
            status = (self.get("trainingjobs", namespace, name) or {}).get("status")
            tail = self.sb.operator_logs()[-3000:]
            return f"TrainingJob {name} to finish; status {status}\noperator log:\n{tail}"

        found: dict[str, Any] | None = wait_for(finished, timeout=timeout, interval=0.25, message=explain)
        assert found is not None
        return found

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return [event for event in self.objects("events", namespace)
                if event.get("involvedObject", {}).get("name") == name]

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            return str(response.read().decode())


@contextmanager
def operator_sandbox(**kwargs: Any) -> Iterator[OperatorSandbox]:
    # The sandbox gives the operator free metrics/health/webhook ports; runs are re-checked every second.
    env = {"CLM_RESYNC_SECONDS": "1", **kwargs.pop("operator_env", {})}
    with Sandbox(operator=True, s3=True, operator_env=env, **kwargs) as sandbox:
        yield OperatorSandbox(sandbox, sandbox.metrics_port)


def training_job(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "modelName": "btc-xgb",
        "algorithm": "xgboost",
        "dataset": {"uri": "builtin:synthetic?kind=planted&strength=1.5&regime=50&seed=7&bars=4500",
                    "symbol": "BTCUSDT"},
        "hyperparameters": {"nEstimators": 40, "maxDepth": 3},
        "target": {"horizonBars": 1},  # the strong 50-bar regimes: a 1-bar target trades them often
        "evaluation": {"folds": 3},
    }
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob", "metadata": {"name": name},
            "spec": {key: value for key, value in body.items() if value is not None}}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            return dict(item)
    raise AssertionError(f"no {type_} condition in {obj.get('status')}")
