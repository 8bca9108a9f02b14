"""``clm-sandbox demo``: the whole loop on this machine, no cluster needed.

Starts the sandbox (a real control plane - etcd, kube-apiserver, kube-controller-manager -, the node agent,
S3, and the operator installed by its Helm chart), applies ``examples/*.yaml`` with the real
kubectl, waits until every TrainingJob has finished and a Model serves a production version (progress
lines while waiting, a timeout), prints ``kubectl get tj,mv,mdl``, one line per ModelVersion (a Failed
one says which criteria failed, or why its training failed) and ``kubectl clm status``, and stops
everything: the printed KUBECONFIG is deleted with the sandbox, unless ``--keep`` keeps it running until
Ctrl-C. Market data named by an example's ``s3://bucket/key`` dataset is uploaded from the repository's
``../shared/data`` when a file of that name is there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from clm_contract import GROUP, VERSION

from clm_sandbox.cluster import REPO_ROOT, S3_ACCESS_KEY, S3_SECRET_KEY, Sandbox

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
TERMINAL_PHASES = ("Succeeded", "Failed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--examples-dir",
        type=Path,
        default=REPO_ROOT / "examples",
        help="manifests to apply (default: examples/)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the results")
    parser.add_argument("--max-parallel", type=int, default=2, help="training pods run at once")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=SHARED_DATA,
        help="where files named by s3:// dataset URIs are found for upload",
    )
    parser.add_argument("--keep", action="store_true",
                        help="keep the sandbox (and its KUBECONFIG) running after the results, until Ctrl-C")


def _say(text: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _documents(examples: list[Path]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in examples:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return docs


def _upload_datasets(sandbox: Sandbox, docs: list[dict[str, Any]], data_dir: Path) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=sandbox.s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
    )
    for doc in docs:
        spec = doc.get("spec") or {}
        spec = spec.get("template", spec) if doc.get("kind") == "Model" else spec
        uri = str(((spec.get("dataset") or {}).get("uri")) or "")
        if not uri.startswith("s3://"):
            continue
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        local = data_dir / Path(key).name
        if not local.is_file():
            _say(f"note: {uri} is not uploaded ({local} does not exist)")
            continue
        existing = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
        client.upload_file(str(local), bucket, key)
        _say(f"uploaded {local.name} to {uri}")


def run_phase(job: dict[str, Any]) -> str:
    """``name=Phase`` of a TrainingJob, with the reason of a failed one: ``name=Failed(BadData)``."""
    status = job.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    reason = f"({status['reason']})" if phase == "Failed" and status.get("reason") else ""
    return f"{job['metadata']['name']}={phase}{reason}"


def version_line(mv: dict[str, Any]) -> str:
    """One ModelVersion: its stage and score; a Failed one says which criteria failed (or why it has no
    model at all)."""
    status = mv.get("status") or {}
    stage = str(status.get("stage") or "Training")
    evaluation = status.get("evaluation") or {}
    line = f"{mv['metadata'].get('namespace', 'default')}/{mv['metadata']['name']}: {stage}"
    if isinstance(evaluation.get("score"), int | float):
        line += f", score {evaluation['score']:.2f}"
    if stage == "Failed":
        failed = evaluation.get("failedCriteria") or []
        if failed:
            line += "; failed criteria: " + "; ".join(str(c) for c in failed)
        else:
            trained: dict[str, Any] = next(
                (c for c in status.get("conditions") or [] if c.get("type") == "Trained"), {})
            why = f"{trained.get('reason', '?')}: {trained.get('message', '')}".rstrip(": ")
            line += f"; training failed: {why}"
    return line


def _progress(sandbox: Sandbox) -> tuple[str, bool, list[str]]:
    jobs = sandbox.list_objects(GROUP, VERSION, "trainingjobs")
    models = sandbox.list_objects(GROUP, VERSION, "models")
    phases = [run_phase(j) for j in jobs]
    served = [m["metadata"]["name"] for m in models if (m.get("status") or {}).get("productionVersion")]
    jobs_done = bool(jobs) and all((j.get("status") or {}).get("phase") in TERMINAL_PHASES for j in jobs)
    done = jobs_done and (bool(served) or not models)
    line = f"trainingjobs: {', '.join(phases) or 'none yet'}; models with production: {served or 'none yet'}"
    return line, done, served


def main(args: argparse.Namespace) -> int:
    examples = sorted(args.examples_dir.glob("*.yaml"))
    if not examples:
        _say(f"no manifests in {args.examples_dir}: nothing to demo")
        return 1
    docs = _documents(examples)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        # Python's default for SIGTERM ends the process without unwinding: the sandbox's own cleanup
        # (stopping the node agent's containers, then the control plane) would never run, and the
        # running pods' processes would outlive the demo. Unwind as Ctrl-C does.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return _run(args, examples, docs)
    except KeyboardInterrupt:
        _say("interrupted: the sandbox and every pod's processes were stopped")
        return 130


def _run(args: argparse.Namespace, examples: list[Path], docs: list[dict[str, Any]]) -> int:
    _say("starting the sandbox (etcd, kube-apiserver, kube-controller-manager, node agent, S3, "
         "helm install of the operator)...")
    with Sandbox(operator=True, s3=True, max_parallel=args.max_parallel) as sandbox:
        lifetime = ("kept until Ctrl-C (--keep)" if args.keep
                    else "deleted when the demo exits; pass --keep to keep the sandbox running")
        _say(f"API server {sandbox.url}; export KUBECONFIG={sandbox.kubeconfig} ({lifetime})")
        for namespace in sorted({str((d.get("metadata") or {}).get("namespace") or "default") for d in docs}):
            sandbox.create_namespace(namespace, exist_ok=True)
        _upload_datasets(sandbox, docs, args.data_dir)
        for path in examples:
            result = sandbox.kubectl("apply", "-f", str(path))
            _say(f"kubectl apply -f {path.name}: {(result.stdout or result.stderr).strip()}")
        deadline = time.monotonic() + args.timeout
        last, done = "", False
        served: list[str] = []
        while time.monotonic() < deadline:
            line, done, served = _progress(sandbox)
            if line != last:
                _say(line)
                last = line
            if done:
                break
            exited = sandbox.exited_component()
            if exited is not None:
                _say(f"{exited} exited; logs in {sandbox.controlplane.logs}")
                break
            time.sleep(2.0)
        if not done:
            _say(f"not finished after {args.timeout:.0f}s (operator log: last lines below)")
            print(sandbox.operator_logs()[-3000:], flush=True)
        print(sandbox.kubectl("get", "tj,mv,mdl", "--all-namespaces").stdout, flush=True)
        for mv in sorted(sandbox.list_objects(GROUP, VERSION, "modelversions"),
                         key=lambda item: str(item["metadata"]["name"])):
            _say(version_line(mv))
        plugin = shutil.which("kubectl-clm", path=str(Path(sys.executable).parent)) or shutil.which(
            "kubectl-clm"
        )
        if plugin is None:
            _say("kubectl-clm is not installed: skipping `kubectl clm status`")
        models = [
            (m["metadata"].get("namespace", "default"), m["metadata"]["name"])
            for m in sandbox.list_objects(GROUP, VERSION, "models")
        ]
        if not models:
            _say("no Model among the examples: versions stay Candidates until a Model's policy promotes one")
        env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)}
        for namespace, model in models:
            if plugin is None:
                break
            status = subprocess.run(
                [plugin, "status", model, "-n", namespace],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            _say(f"kubectl clm status {model} -n {namespace}:")
            print(status.stdout or status.stderr, flush=True)
        if args.keep:
            _keep(sandbox)
        return 0 if done else 1


def _keep(sandbox: Sandbox) -> None:
    _say(f"--keep: the sandbox keeps running; export KUBECONFIG={sandbox.kubeconfig}; Ctrl-C to stop")
    try:
        while sandbox.exited_component() is None:
            time.sleep(1.0)
        _say(f"{sandbox.exited_component()} exited; stopping")
    except KeyboardInterrupt:
        _say("stopping the sandbox")
