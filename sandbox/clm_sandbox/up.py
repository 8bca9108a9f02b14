"""``clm-sandbox up``: the local cluster (a real control plane, the node agent, S3) with the
operator installed by its Helm chart, until Ctrl-C.

Prints the kubeconfig to use (``export KUBECONFIG=...``: the admin, ``system:masters``); ``--ready-file``
writes a JSON summary (kubeconfig, API URL, S3 endpoint) once everything is up, for scripts that wait on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from clm_sandbox.cluster import DEFAULT_CRDS_DIR, Sandbox


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address of the API server (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port of the API server (default: a free one)")
    parser.add_argument("--namespace", default="default", help="namespace prepared with the S3 Secret")
    parser.add_argument("--crds-dir", type=Path, default=DEFAULT_CRDS_DIR, help="CRD YAML files to install")
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        help="an image the node agent runs like the trainer image (its command from this venv's PATH; "
        "repeatable); any other image fails to pull",
    )
    parser.add_argument("--max-parallel", type=int, default=2, help="pods run at once (default 2)")
    parser.add_argument("--no-operator", action="store_true", help="do not start the operator")
    parser.add_argument("--no-s3", action="store_true", help="do not start the S3 server")
    parser.add_argument(
        "--clock-file",
        type=Path,
        default=None,
        help="pass CLM_CLOCK_FILE to the operator (a controllable 'now' for schedules; not under /tmp, "
        "which the operator's pod mounts an emptyDir over)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the kubeconfig, certificates, etcd data, logs and pods go (default: a new directory "
        "under /var/tmp)",
    )
    parser.add_argument(
        "--ready-file", type=Path, default=None, help="write a JSON summary here once the sandbox is up"
    )


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per request drowns the rest
    if args.port < 0 or args.max_parallel < 1:
        raise SystemExit("--port must be >= 0 and --max-parallel >= 1")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sandbox = Sandbox(
        host=args.host,
        port=args.port or None,
        operator=not args.no_operator,
        s3=not args.no_s3,
        crds_dir=args.crds_dir,
        images=args.image,
        max_parallel=args.max_parallel,
        namespace=args.namespace,
        clock_file=args.clock_file,
        workdir=args.workdir,
    )
    status = 0
    with sandbox:
        summary = {
            "kubeconfig": str(sandbox.kubeconfig),
            "server": sandbox.url,
            "namespace": args.namespace,
            "s3EndpointUrl": sandbox.s3.endpoint_url if sandbox.s3 is not None else None,
            "operatorLog": str(sandbox.operator_log) if not args.no_operator else None,
            "logs": str(sandbox.controlplane.logs),
            "operatorMetricsPort": sandbox.metrics_port if not args.no_operator else None,
            "operatorWebhookPort": sandbox.webhook_port if not args.no_operator else None,
        }
        print(f"sandbox API server: {sandbox.url} (logs of every component: {sandbox.controlplane.logs})",
              flush=True)
        if summary["s3EndpointUrl"]:
            print(f"S3 endpoint: {summary['s3EndpointUrl']}", flush=True)
        if summary["operatorLog"]:
            print(f"operator log: {summary['operatorLog']}", flush=True)
        print(f"kubeconfig: {sandbox.kubeconfig}", flush=True)
        print(f"export KUBECONFIG={sandbox.kubeconfig}", flush=True)
        if args.ready_file is not None:
            args.ready_file.write_text(json.dumps(summary, indent=2))
        print("running; Ctrl-C to stop", flush=True)
        while not stop.wait(1.0):
            exited = sandbox.exited_component()
            if exited is not None:
                print(f"{exited} exited; see {sandbox.controlplane.logs}", flush=True)
                status = 1
                break
    if args.ready_file is not None:
        args.ready_file.unlink(missing_ok=True)
    return status
