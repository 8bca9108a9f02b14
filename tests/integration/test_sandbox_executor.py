"""The sandbox's Job executor runs Jobs the way the kubelet and the Job controller would, observed through
the real kubectl and the API: pods per attempt, termination messages, retries, podFailurePolicy, secrets,
images that cannot be pulled, suspend, deadlines and TTL."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from clm_operator.sandbox.cluster import Sandbox, wait_for

from tests.fixtures.sandbox import Kubectl

TIMEOUT = 30.0


def job(
    name: str,
    code: str,
    *,
    image: str = "python-runner:local",
    env: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> str:
    container: dict[str, Any] = {"name": "main", "image": image, "command": ["python", "-c", code]}
    if env:
        container["env"] = env
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }
    return json.dumps(body)


def get(kc: Kubectl, *what: str) -> Any:
    return json.loads(kc("get", *what, "-o", "json", check=True).stdout)


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    return next(
        (
            c
            for c in (obj.get("status") or {}).get("conditions") or []
            if c["type"] == ctype and c["status"] == "True"
        ),
        None,
    )


def finished(kc: Kubectl, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        obj = get(kc, "job", name)
        return obj if condition(obj, "Complete") or condition(obj, "Failed") else None

    result: dict[str, Any] = wait_for(done, timeout=TIMEOUT, message=f"job {name} to finish")
    return result


def pods_of(kc: Kubectl, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get(kc, "pods", "-l", f"job-name={name}")["items"]
    return items


WRITE_RESULT = "import os; open(os.environ['CLM_TERMINATION_LOG'], 'w').write({!r}); print('training done')"


def test_successful_job_records_termination_message(bare_kubectl: Kubectl) -> None:
    kc = bare_kubectl
    kc("apply", "-f", "-", input=job("ok", WRITE_RESULT.format('{"status": "Succeeded"}')), check=True)
    done = finished(kc, "ok")
    assert condition(done, "Complete")["reason"] == "CompletionsReached"  # type: ignore[index]
    assert condition(done, "SuccessCriteriaMet") is not None
    assert done["status"]["succeeded"] == 1 and done["status"]["completionTime"]
    [pod] = pods_of(kc, "ok")
    assert pod["metadata"]["name"].startswith("ok-") and len(pod["metadata"]["name"]) == len("ok-") + 5
    assert pod["metadata"]["ownerReferences"][0]["uid"] == done["metadata"]["uid"]
    assert pod["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "ok"
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert json.loads(terminated["message"]) == {"status": "Succeeded"}
    assert terminated["startedAt"] <= terminated["finishedAt"]
    assert "training done" in kc("logs", pod["metadata"]["name"], check=True).stdout


def test_exit_2_with_fail_job_policy_fails_at_once(bare_kubectl: Kubectl) -> None:
    kc = bare_kubectl
    policy = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [2]}}
        ]
    }
    kc(
        "apply",
        "-f",
        "-",
        input=job("permanent", "raise SystemExit(2)", backoffLimit=3, podFailurePolicy=policy),
        check=True,
    )
    failed = finished(kc, "permanent")
    assert condition(failed, "Failed")["reason"] == "PodFailurePolicy"  # type: ignore[index]
    assert condition(failed, "FailureTarget") is not None
    pods = pods_of(kc, "permanent")
    assert len(pods) == 1
    assert pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 2


def test_exit_1_is_retried_up_to_the_backoff_limit(bare_kubectl: Kubectl) -> None:
    kc = bare_kubectl
    kc("apply", "-f", "-", input=job("transient", "raise SystemExit(1)", backoffLimit=2), check=True)
    failed = finished(kc, "transient")
    assert condition(failed, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
    assert failed["status"]["failed"] == 3
    pods = pods_of(kc, "transient")
    assert len(pods) == 3 and len({p["metadata"]["name"] for p in pods}) == 3
    assert {p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] for p in pods} == {"Error"}


def test_secret_key_ref_and_field_ref_are_resolved(
    bare_sandbox: Sandbox, bare_kubectl: Kubectl, bare_namespace: str
) -> None:
    kc = bare_kubectl
    env: list[dict[str, Any]] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "PLAIN", "value": "v"},
    ]
    code = (
        "import os; open(os.environ['CLM_TERMINATION_LOG'], 'w')"
        ".write(os.environ['TOKEN'] + '|' + os.environ['NS'] + '|' + os.environ['PLAIN'])"
    )
    kc("apply", "-f", "-", input=job("secretive", code, env=env), check=True)

    def waiting_reason() -> str | None:
        pods = pods_of(kc, "secretive")
        statuses = pods[0]["status"].get("containerStatuses") if pods else None
        return statuses[0]["state"].get("waiting", {}).get("reason") if statuses else None

    # No Secret yet: the kubelet waits with CreateContainerConfigError (the pod does not fail).
    assert wait_for(waiting_reason, timeout=TIMEOUT) == "CreateContainerConfigError"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "stringData": {"token": "s3cr3t"},
    }
    kc("apply", "-f", "-", input=json.dumps(secret), check=True)
    assert condition(finished(kc, "secretive"), "Complete") is not None
    [pod] = pods_of(kc, "secretive")
    message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert message == f"s3cr3t|{bare_namespace}|v"


def test_unknown_image_waits_in_image_pull_back_off(bare_kubectl: Kubectl) -> None:
    kc = bare_kubectl
    kc("apply", "-f", "-", input=job("unpullable", "print(1)", image="registry.example/nope:1.0"), check=True)

    def waiting() -> dict[str, Any] | None:
        pods = pods_of(kc, "unpullable")
        statuses = pods[0]["status"].get("containerStatuses") if pods else None
        return statuses[0]["state"].get("waiting") if statuses else None

    state = wait_for(waiting, timeout=TIMEOUT)
    assert state["reason"] == "ImagePullBackOff" and "registry.example/nope:1.0" in state["message"]
    obj = get(kc, "job", "unpullable")
    assert obj["status"]["active"] == 1 and not condition(obj, "Failed") and not condition(obj, "Complete")
    assert pods_of(kc, "unpullable")[0]["status"]["phase"] == "Pending"


def test_suspended_job_never_runs_until_resumed(bare_kubectl: Kubectl) -> None:
    kc = bare_kubectl
    kc("apply", "-f", "-", input=job("held", "print('ran')", suspend=True), check=True)
    suspended = wait_for(lambda: condition(get(kc, "job", "held"), "Suspended"), timeout=TIMEOUT)
    assert suspended["reason"] == "JobSuspended"
    assert pods_of(kc, "held") == []
    kc("patch", "job", "held", "--type", "merge", "-p", '{"spec":{"suspend":false}}', check=True)
    assert condition(finished(kc, "held"), "Complete") is not None
    assert len(pods_of(kc, "held")) == 1


def test_active_deadline_fails_the_job(bare_kubectl: Kubectl) -> None:
    kc = bare_kubectl
    kc(
        "apply",
        "-f",
        "-",
        input=job("slow", "import time; time.sleep(60)", activeDeadlineSeconds=1),
        check=True,
    )
    failed = finished(kc, "slow")
    assert condition(failed, "Failed")["reason"] == "DeadlineExceeded"  # type: ignore[index]


def test_ttl_after_finished_deletes_job_and_pods(bare_kubectl: Kubectl) -> None:
    kc = bare_kubectl
    kc("apply", "-f", "-", input=job("ephemeral", "print(1)", ttlSecondsAfterFinished=0), check=True)
    wait_for(
        lambda: "NotFound" in kc("get", "job", "ephemeral").stderr,
        timeout=TIMEOUT,
        message="the job to be deleted by its TTL",
    )
    wait_for(lambda: pods_of(kc, "ephemeral") == [], timeout=TIMEOUT, message="its pods to be collected")


def test_job_validation_matches_a_real_server(bare_kubectl: Kubectl) -> None:
    kc = bare_kubectl
    body = json.loads(job("invalid", "print(1)"))
    del body["spec"]["template"]["spec"]["restartPolicy"]
    result = kc("apply", "-f", "-", input=json.dumps(body))
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in result.stderr
    body["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    body["spec"]["podFailurePolicy"] = {"rules": [{"action": "FailJob",
                                                   "onExitCodes": {"operator": "In", "values": [2]}}]}
    result = kc("apply", "-f", "-", input=json.dumps(body))
    assert 'only "Never" is supported when podFailurePolicy is specified' in result.stderr
    body = json.loads(job("invalid", "print(1)"))
    body["metadata"]["labels"] = {"clm.dev/model": "x" * 64}
    result = kc("apply", "-f", "-", input=json.dumps(body))
    assert "metadata.labels" in result.stderr and "at most 63 characters" in result.stderr
    assert "NotFound" in kc("get", "job", "invalid").stderr


def test_stopping_the_sandbox_kills_running_containers(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    with Sandbox(operator=False, s3=False, crds_dir=None) as cluster:
        cluster.kubectl("apply", "-f", "-", input=job("long", code), check=True, namespace="default")
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=TIMEOUT, message="the container")
        pid = int(pid_file.read_text())

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout=10, message=f"process {pid} to be killed")
