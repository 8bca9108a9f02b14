"""The node agent against the real control plane (``bare_sandbox``: etcd, kube-apiserver, kube-controller-
manager and the agent): a kubelet's contract as the API shows it, observed only through kubectl.

Every pod runs in a namespace enforcing Pod Security ``restricted`` as uid 10001, with the sandbox's trainer
image (mapped to this venv) and its own command: the image map's entrypoint is replaced, as in Kubernetes.
Two tests need no cluster: the agent's refusal of a bad image map, and the container shim on its own
(nothing a container writes reaches the host). All need root, as the sandbox does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from clm_operator.domain.config import DEFAULT_TRAINER_IMAGE
from clm_sandbox.cluster import NODE_NAME, Sandbox, find_kubectl
from clm_sandbox.node import runtime

from tests.support.cluster import Kubectl, free_port, wait_for

IMAGE = DEFAULT_TRAINER_IMAGE  # mapped by the sandbox to this venv (PATH: venv bin, /usr/bin, /bin)
HARDENED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "command": ["/bin/sh", "-c", script],
        "securityContext": HARDENED,
        **extra,
    }


def pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"test": name}},
        "spec": {
            "restartPolicy": "Never",
            "containers": containers,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            **spec,
        },
    }


def template(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A pod template (a Job's, a Deployment's): the pod without apiVersion and kind."""
    body = pod(name, containers, **spec)
    return {"metadata": body["metadata"], "spec": body["spec"]}


def create(kubectl: Kubectl, *documents: dict[str, Any]) -> None:
    kubectl(
        "create",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(documents)}),
        check=True,
    )


def get(kubectl: Kubectl, kind: str, name: str) -> dict[str, Any] | None:
    result = kubectl("get", kind, name, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def wait_phase(kubectl: Kubectl, name: str, phases: tuple[str, ...], timeout: float = 60.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found = get(kubectl, "pod", name)
        return found if found and (found.get("status") or {}).get("phase") in phases else None

    return wait_for(
        done,
        timeout=timeout,
        interval=0.3,
        message=lambda: f"pod {name} in {phases}: {json.dumps(get(kubectl, 'pod', name))[-1500:]}",
    )


def statuses(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in found["status"].get("containerStatuses") or []}


def test_the_node_is_ready_with_capacity_and_a_lease(bare_sandbox: Sandbox) -> None:
    node = json.loads(bare_sandbox.kubectl("get", "node", NODE_NAME, "-o", "json", check=True).stdout)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    assert node["status"]["allocatable"]["pods"] and "nvidia.com/gpu" in node["status"]["capacity"]
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == NODE_NAME
    lease = json.loads(
        bare_sandbox.kubectl(
            "get", "lease", NODE_NAME, "-n", "kube-node-lease", "-o", "json", check=True
        ).stdout
    )
    assert lease["spec"]["holderIdentity"] == NODE_NAME
    assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
    first = lease["spec"]["renewTime"]
    wait_for(
        lambda: (
            json.loads(
                bare_sandbox.kubectl(
                    "get", "lease", NODE_NAME, "-n", "kube-node-lease", "-o", "json", check=True
                ).stdout
            )["spec"]["renewTime"]
            != first
        ),
        timeout=25,
        interval=1.0,
        message="the node Lease to be renewed",
    )


PROBE_SCRIPT = textwrap.dedent("""
    import json, os, ssl, urllib.request
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    token = open(f"{sa}/token").read()
    namespace = open(f"{sa}/namespace").read()
    context = ssl.create_default_context(cafile=f"{sa}/ca.crt")
    url = (f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
           f"/api/v1/namespaces/{namespace}/pods/{os.environ['POD_NAME']}")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        me = json.load(answer)
    try:
        open("/etc/clm-written", "w")
        root = "writable"
    except OSError as exc:
        root = type(exc).__name__
    open("/scratch/file", "w").write("ok")
    result = {"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
              "key": os.environ["S3_KEY"], "level": os.environ["LEVEL"],
              "prefixed": os.environ.get("CM_LEVEL"),
              "ns": os.environ["NS"], "api_name": me["metadata"]["name"], "api_node": me["spec"]["nodeName"],
              "root": root, "hook": open("/etc/hook/token").read(),
              "hook_mode": oct(os.stat("/etc/hook/token").st_mode & 0o777), "cwd": os.getcwd()}
    open("/dev/termination-log", "w").write(json.dumps(result))
    print("done", flush=True)
""")


def test_env_volumes_token_and_the_api_from_inside_a_pod(
    bare_sandbox: Sandbox, bare_kubectl: Kubectl, bare_namespace: str
) -> None:
    create(
        bare_kubectl,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3"},
            "stringData": {"key": "AKIA-TEST"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hook"},
            "stringData": {"token": "hook-tok"},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"LEVEL": "debug"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "read-pods"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "read-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-pods"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": bare_namespace}],
        },
        pod(
            "inside",
            [
                {
                    "name": "main",
                    "image": IMAGE,
                    "command": ["python", "-I", "-c", PROBE_SCRIPT],
                    "securityContext": HARDENED,
                    "workingDir": "/scratch",
                    "env": [
                        {"name": "S3_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "key"}}},
                        {
                            "name": "LEVEL",
                            "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}},
                        },
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    ],
                    "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
                    "volumeMounts": [
                        {"name": "scratch", "mountPath": "/scratch"},
                        {"name": "hook", "mountPath": "/etc/hook", "readOnly": True},
                    ],
                }
            ],
            volumes=[
                {"name": "scratch", "emptyDir": {}},
                {"name": "hook", "secret": {"secretName": "hook", "defaultMode": 0o440}},
            ],
        ),
    )
    found = wait_phase(bare_kubectl, "inside", ("Succeeded", "Failed"), timeout=90)
    state = statuses(found)["main"]["state"]["terminated"]
    assert found["status"]["phase"] == "Succeeded", state
    assert state["exitCode"] == 0 and state["reason"] == "Completed"
    result = json.loads(state["message"])
    assert result["uid"] == 10001 and result["gid"] == 10001 and 10001 in result["groups"]
    assert result["key"] == "AKIA-TEST" and result["level"] == "debug" and result["prefixed"] == "debug"
    assert (
        result["ns"] == bare_namespace and result["api_name"] == "inside" and result["api_node"] == NODE_NAME
    )
    assert result["root"] in ("OSError", "PermissionError") and result["cwd"] == "/scratch"
    assert result["hook"] == "hook-tok" and result["hook_mode"] == "0o440"  # root:fsGroup, group-readable
    assert found["spec"]["volumes"][-1]["projected"]  # the ServiceAccount admission's kube-api-access volume
    by_type = {c["type"]: c for c in found["status"]["conditions"]}
    assert by_type["PodScheduled"]["status"] == "True" and by_type["Ready"]["reason"] == "PodCompleted"
    assert found["status"]["podIP"] == "127.0.0.1" and found["status"]["startTime"]
    log = bare_sandbox.pods_dir / "pods" / f"{bare_namespace}_inside" / "main.log"
    assert log.read_text() == "done\n"
    assert not Path("/etc/clm-written").exists()


def test_exit_codes_and_termination_messages(bare_kubectl: Kubectl) -> None:
    create(
        bare_kubectl,
        pod(
            "exits",
            [
                container("file", "echo 'bad input: field x' > /dev/termination-log; exit 3"),
                container(
                    "logs",
                    "echo first; echo 'last words'; exit 4",
                    terminationMessagePolicy="FallbackToLogsOnError",
                ),
                container("custom", "echo fine > /tmp/msg; exit 0", terminationMessagePath="/tmp/msg"),
            ],
        ),
    )
    found = wait_phase(bare_kubectl, "exits", ("Succeeded", "Failed"))
    assert found["status"]["phase"] == "Failed"
    by_name = {n: s["state"]["terminated"] for n, s in statuses(found).items()}
    assert (by_name["file"]["exitCode"], by_name["file"]["reason"]) == (3, "Error")
    assert by_name["file"]["message"] == "bad input: field x\n"
    assert by_name["logs"]["exitCode"] == 4 and by_name["logs"]["message"] == "first\nlast words\n"
    assert (by_name["custom"]["exitCode"], by_name["custom"]["reason"]) == (0, "Completed")
    assert by_name["custom"]["message"] == "fine\n"
    assert all(s["containerID"].startswith("clm://") for s in by_name.values())


def _watch(sandbox: Sandbox, namespace: str, name: str) -> subprocess.Popen[str]:
    """``kubectl get pod NAME --watch`` with every event as JSON, until the caller stops it."""
    return subprocess.Popen(
        [
            find_kubectl(),
            "--kubeconfig",
            str(sandbox.kubeconfig),
            "-n",
            namespace,
            "get",
            "pod",
            name,
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _events(text: str) -> list[dict[str, Any]]:
    decoder, events, index = json.JSONDecoder(), [], 0
    while text[index:].strip():
        rest = text[index:]
        skip = len(rest) - len(rest.lstrip())
        event, used = decoder.raw_decode(rest.lstrip())
        events.append(event)
        index += skip + used
    return events


def test_deletion_sends_sigterm_then_sigkill_after_the_grace_period(
    bare_sandbox: Sandbox, bare_kubectl: Kubectl, bare_namespace: str
) -> None:
    create(
        bare_kubectl,
        pod(
            "graceful",
            [
                container("stubborn", "trap 'echo got TERM' TERM; echo up; while true; do sleep 0.1; done"),
                container("polite", "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"),
            ],
            terminationGracePeriodSeconds=3,
        ),
    )
    found = wait_phase(bare_kubectl, "graceful", ("Running",))
    wait_for(
        lambda: all(s.get("ready") for s in statuses(get(bare_kubectl, "pod", "graceful") or found).values()),
        timeout=30,
        message="both containers ready",
    )
    watcher = _watch(bare_sandbox, bare_namespace, "graceful")
    time.sleep(1.0)
    started = time.monotonic()
    bare_kubectl("delete", "pod", "graceful", "--wait=true", "--timeout=30s", check=True, timeout=40)
    elapsed = time.monotonic() - started
    time.sleep(1.0)
    watcher.terminate()
    events = _events(watcher.communicate(timeout=10)[0])
    assert 2.5 <= elapsed < 15, elapsed
    assert events and events[-1]["type"] == "DELETED"
    last = events[-1]["object"]
    by_name = {n: s["state"]["terminated"] for n, s in statuses(last).items()}
    assert by_name["stubborn"]["exitCode"] == 137  # trapped SIGTERM, killed after 3 s
    assert by_name["polite"]["exitCode"] == 0 and by_name["polite"]["reason"] == "Completed"
    assert last["status"]["phase"] == "Failed"
    logs = bare_sandbox.pods_dir / "pods" / f"{bare_namespace}_graceful"
    assert "got TERM" in (logs / "stubborn.log").read_text() and "bye" in (logs / "polite.log").read_text()


def test_force_deletion_kills_at_once(
    bare_sandbox: Sandbox, bare_kubectl: Kubectl, bare_namespace: str
) -> None:
    create(
        bare_kubectl,
        pod(
            "forced",
            [
                container(
                    "main",
                    "echo $$$$ > /tmp/pid; while true; do sleep 0.1; done",  # $$ escapes $: the shell sees $$
                    volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}],
                )
            ],
            volumes=[{"name": "tmp", "emptyDir": {}}],
            terminationGracePeriodSeconds=60,
        ),
    )
    wait_phase(bare_kubectl, "forced", ("Running",))
    pid_file = bare_sandbox.pods_dir / "pods" / f"{bare_namespace}_forced" / "volumes" / "tmp" / "pid"
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=20))
    bare_kubectl("delete", "pod", "forced", "--grace-period=0", "--force", check=True)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=10, message=f"process {pid} to be killed")


def test_an_unknown_image_waits_in_image_pull_backoff(bare_kubectl: Kubectl) -> None:
    create(bare_kubectl, pod("no-image", [{**container("main", "true"), "image": "registry.invalid/nope:1"}]))

    def backing_off() -> dict[str, Any] | None:
        found = get(bare_kubectl, "pod", "no-image")
        waiting = ((statuses(found).get("main") or {}).get("state") or {}).get("waiting") if found else None
        return found if waiting and waiting.get("reason") == "ImagePullBackOff" else None

    found = wait_for(backing_off, timeout=30, interval=0.3, message="ImagePullBackOff")
    assert found["status"]["phase"] == "Pending"
    assert (
        'Back-off pulling image "registry.invalid/nope:1"'
        in statuses(found)["main"]["state"]["waiting"]["message"]
    )
    reasons = bare_kubectl(
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=no-image",
        "-o",
        "jsonpath={.items[*].reason}",
        check=True,
    ).stdout.split()
    assert "Failed" in reasons and "Scheduled" in reasons


def test_on_failure_restarts_in_place_keeping_the_empty_dir(bare_kubectl: Kubectl) -> None:
    create(
        bare_kubectl,
        pod(
            "retry",
            [
                container(
                    "main",
                    "if [ -f /data/once ]; then echo second; exit 0; fi; "
                    "touch /data/once; echo first; exit 1",
                    volumeMounts=[{"name": "data", "mountPath": "/data"}],
                )
            ],
            restartPolicy="OnFailure",
            volumes=[{"name": "data", "emptyDir": {}}],
        ),
    )
    found = wait_phase(bare_kubectl, "retry", ("Succeeded", "Failed"), timeout=60)
    status = statuses(found)["main"]
    assert found["status"]["phase"] == "Succeeded" and status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["state"]["terminated"]["exitCode"] == 0


def test_jobs_complete_and_fail_through_the_real_job_controller(bare_kubectl: Kubectl) -> None:
    def job(name: str, script: str) -> dict[str, Any]:
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 2,
                "podFailurePolicy": {
                    "rules": [
                        {
                            "action": "FailJob",
                            "onExitCodes": {"containerName": "main", "operator": "In", "values": [2]},
                        },
                        {
                            "action": "Ignore",
                            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                        },
                    ]
                },
                "template": template(name, [container("main", script)]),
            },
        }

    create(
        bare_kubectl,
        job("works", "echo '{\"ok\": true}' > /dev/termination-log"),
        job("refuses", "echo permanent > /dev/termination-log; exit 2"),
    )

    def condition(name: str) -> str | None:
        found = get(bare_kubectl, "job", name)
        for c in ((found or {}).get("status") or {}).get("conditions") or []:
            if c["type"] in ("Complete", "Failed") and c["status"] == "True":
                return f"{c['type']}/{c.get('reason')}"
        return None

    assert wait_for(lambda: condition("works"), timeout=90, message="Job works to finish") == (
        "Complete/CompletionsReached"
    )
    assert wait_for(lambda: condition("refuses"), timeout=90, message="Job refuses to finish") == (
        "Failed/PodFailurePolicy"
    )
    pods = json.loads(bare_kubectl("get", "pods", "-l", "job-name=works", "-o", "json", check=True).stdout)[
        "items"
    ]
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Succeeded"
    assert statuses(pods[0])["main"]["state"]["terminated"]["message"] == '{"ok": true}\n'
    wait_for(
        lambda: (
            not json.loads(bare_kubectl("get", "pods", "-l", "job-name=works", "-o", "json").stdout)["items"][
                0
            ]["metadata"].get("finalizers")
        ),
        timeout=30,
        message="the Job controller to release the pod",
    )
    bare_kubectl("delete", "job", "works", "refuses", "--cascade=background", check=True)
    wait_for(
        lambda: not json.loads(bare_kubectl("get", "pods", "-o", "json").stdout)["items"],
        timeout=60,
        message="the garbage collector and the node agent to remove the Jobs' pods",
    )


def test_a_deployment_becomes_available_through_its_readiness_probe(bare_kubectl: Kubectl) -> None:
    port = free_port()
    web = template(
        "web",
        [
            container(
                "web",
                f"exec python -m http.server {port} --bind 127.0.0.1",
                workingDir="/tmp",
                volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}],
                ports=[{"name": "http", "containerPort": port}],
                readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
            )
        ],
        restartPolicy="Always",
        volumes=[{"name": "tmp", "emptyDir": {}}],
    )
    web["metadata"] = {"labels": {"app": "web"}}
    create(
        bare_kubectl,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": web},
        },
    )
    wait_for(
        lambda: ((get(bare_kubectl, "deployment", "web") or {}).get("status") or {}).get("availableReplicas"),
        timeout=60,
        interval=0.5,
        message="the Deployment to be available",
    )
    bare_kubectl("delete", "deployment", "web", check=True)


def test_a_restarted_agent_adopts_running_containers_and_cleans_up_deleted_pods(
    bare_sandbox: Sandbox, bare_kubectl: Kubectl, bare_namespace: str
) -> None:
    data = [{"name": "data", "mountPath": "/data"}]
    volumes = [{"name": "data", "emptyDir": {}}]
    create(
        bare_kubectl,
        pod(
            "survivor",
            [
                container(
                    "main",
                    "while [ ! -f /data/stop ]; do sleep 0.1; done; "
                    "echo stopped > /dev/termination-log; exit 5",
                    volumeMounts=data,
                )
            ],
            volumes=volumes,
        ),
        pod(
            "doomed",
            [
                container(
                    "main",
                    "echo $$$$ > /data/pid; echo up; while true; do sleep 0.1; done",
                    volumeMounts=data,
                )
            ],
            volumes=volumes,
        ),
    )
    before = statuses(wait_phase(bare_kubectl, "survivor", ("Running",)))["main"]
    wait_phase(bare_kubectl, "doomed", ("Running",))
    pods = bare_sandbox.pods_dir / "pods"
    pid_file = pods / f"{bare_namespace}_doomed" / "volumes" / "data" / "pid"
    doomed_pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=20))
    agent = bare_sandbox.node_process
    assert agent is not None
    os.kill(agent.pid, signal.SIGKILL)  # no clean shutdown: the containers keep running
    agent.wait(10)
    bare_kubectl("delete", "pod", "doomed", "--grace-period=0", "--force", check=True)  # while no agent runs
    assert Path(f"/proc/{doomed_pid}").exists()
    bare_sandbox.restart_node_agent()
    (pods / f"{bare_namespace}_survivor" / "volumes" / "data" / "stop").write_text("")
    found = wait_phase(bare_kubectl, "survivor", ("Succeeded", "Failed"))
    after = statuses(found)["main"]["state"]["terminated"]
    assert after["exitCode"] == 5 and after["message"] == "stopped\n"
    assert after["containerID"] == before["containerID"] and statuses(found)["main"]["restartCount"] == 0
    wait_for(
        lambda: not Path(f"/proc/{doomed_pid}").exists(), timeout=20, message="the deleted pod's process"
    )
    assert not (pods / f"{bare_namespace}_doomed" / "volumes").exists()
    assert (pods / f"{bare_namespace}_doomed" / "main.log").read_text() == "up\n"  # logs outlive their pod


def test_the_agent_refuses_a_bad_image_map_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"x": {"argv": "sh"}}))
    config = tmp_path / "kubeconfig"
    config.write_text("{}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "clm_sandbox.nodeagent",
            "--kubeconfig",
            str(config),
            "--node-name",
            "n",
            "--workdir",
            str(tmp_path),
            "--image-map",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--image-map" in result.stderr and "argv: expected a list of strings" in result.stderr


@pytest.fixture(autouse=True)
def _only_as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "the node agent's tests need root (mount namespaces, switching users), as the sandbox does"
        )


@pytest.mark.parametrize("read_only_root", [False, True])
def test_a_container_writes_nothing_onto_the_host(tmp_path: Path, read_only_root: bool) -> None:
    """The shim alone (no cluster): a root that is read-only, or writable into the pod's own layer."""
    marker = f"/clm-node-agent-test-{os.getpid()}-{read_only_root}"
    script = (
        f"echo x > {marker} && echo wrote; cat /etc/hostname; "
        f"cat {marker} 2>/dev/null; python -c 'import os; print(os.getuid())'"
    )
    plan = {
        "argv": ["/bin/sh", "-c", script],
        "env": {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        "cwd": "/",
        "uid": 10001 if read_only_root else 0,
        "gid": 10001 if read_only_root else 0,
        "groups": [],
        "hostname": "pod-x",
        "readOnlyRoot": read_only_root,
        "podDir": str(tmp_path),
        "imagePaths": [sys.base_prefix],
        "mounts": [],
    }
    run = runtime.start(tmp_path / "runs" / "main-0", plan, tmp_path / "main.log")
    record = run.wait(30)
    assert record is not None and record.exit_code == 0 and not record.start_error
    output = (tmp_path / "main.log").read_text().splitlines()
    uid = "10001" if read_only_root else "0"
    if read_only_root:
        assert output == [f"/bin/sh: 1: cannot create {marker}: Read-only file system", "pod-x", uid]
    else:
        assert output == ["wrote", "pod-x", "x", uid]
    assert not Path(marker).exists()


def test_a_failing_liveness_probe_restarts_the_container(bare_kubectl: Kubectl) -> None:
    script = (
        "if [ -f /data/ran ]; then touch /data/healthy; fi; touch /data/ran; "
        "trap 'exit 0' TERM; while true; do sleep 0.1; done"
    )
    liveness = {
        "exec": {"command": ["test", "-f", "/data/healthy"]},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    create(
        bare_kubectl,
        pod(
            "lively",
            [
                container(
                    "main",
                    script,
                    livenessProbe=liveness,
                    volumeMounts=[{"name": "data", "mountPath": "/data"}],
                )
            ],
            restartPolicy="Always",
            terminationGracePeriodSeconds=5,
            volumes=[{"name": "data", "emptyDir": {}}],
        ),
    )

    def restarted() -> dict[str, Any] | None:
        found = get(bare_kubectl, "pod", "lively")
        status = statuses(found).get("main") if found else None
        return status if status and status["restartCount"] >= 1 and "running" in status["state"] else None

    status = wait_for(
        restarted, timeout=60, interval=0.5, message="the liveness probe to restart the container"
    )
    assert status["lastState"]["terminated"]["exitCode"] == 0  # SIGTERM, trapped: a graceful stop
    time.sleep(3)  # the second run is healthy: no further restart (a failing one is killed within 2 s)
    assert statuses(get(bare_kubectl, "pod", "lively") or {})["main"]["restartCount"] == 1
    reasons = bare_kubectl(
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=lively",
        "-o",
        "jsonpath={.items[*].reason}",
        check=True,
    ).stdout.split()
    assert "Unhealthy" in reasons and "Killing" in reasons


def test_init_containers_run_first_and_in_order(bare_kubectl: Kubectl) -> None:
    data = [{"name": "data", "mountPath": "/data"}]
    create(
        bare_kubectl,
        pod(
            "ordered",
            [container("main", "cat /data/steps > /dev/termination-log", volumeMounts=data)],
            initContainers=[
                container("one", "echo one >> /data/steps", volumeMounts=data),
                container("two", "echo two >> /data/steps", volumeMounts=data),
            ],
            volumes=[{"name": "data", "emptyDir": {}}],
        ),
    )
    found = wait_phase(bare_kubectl, "ordered", ("Succeeded", "Failed"))
    assert found["status"]["phase"] == "Succeeded"
    assert [s["state"]["terminated"]["exitCode"] for s in found["status"]["initContainerStatuses"]] == [0, 0]
    assert statuses(found)["main"]["state"]["terminated"]["message"] == "one\ntwo\n"
    by_type = {c["type"]: c for c in found["status"]["conditions"]}
    assert by_type["Initialized"]["status"] == "True"


def test_kubectl_logs_reads_the_current_and_the_previous_run(bare_kubectl: Kubectl) -> None:
    create(
        bare_kubectl,
        pod(
            "chatty",
            [
                container(
                    "main",
                    "if [ -f /data/once ]; then echo second run; sleep 30; fi; touch /data/once; "
                    "echo first run; echo line two; exit 1",
                    volumeMounts=[{"name": "data", "mountPath": "/data"}],
                )
            ],
            restartPolicy="OnFailure",
            volumes=[{"name": "data", "emptyDir": {}}],
        ),
    )

    def second_run() -> bool:
        found = get(bare_kubectl, "pod", "chatty")
        status = statuses(found).get("main") if found else None
        return bool(status and status["restartCount"] == 1 and "running" in status["state"])

    wait_for(second_run, timeout=60, interval=0.3, message="the second run")
    previous = bare_kubectl("logs", "chatty", "--previous", check=True).stdout
    assert previous == "first run\nline two\n"
    assert bare_kubectl("logs", "chatty", "--previous", "--tail=1", check=True).stdout == "line two\n"
    current = wait_for(lambda: bare_kubectl("logs", "chatty").stdout, timeout=10, message="the current log")
    assert current == "second run\n"
