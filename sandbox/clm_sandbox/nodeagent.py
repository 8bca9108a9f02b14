"""``python -m clm_sandbox.nodeagent``: the sandbox's node agent (a kubelet of the project's own).

It registers a Ready Node and keeps its Lease, binds pending pods to it, runs each pod's containers as local
processes (the image mapped to a local command by ``--image-map``, volumes and the ServiceAccount token at
their mount paths in a private mount namespace per container, as the pod's user) and reports their status
as a kubelet does, and serves their logs to ``kubectl logs``. It must run as root (namespaces, bind mounts,
switching users). The parts are in ``clm_sandbox/node/``; SIGTERM or SIGINT stops every container
and marks the Node NotReady.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

from clm_sandbox.node.agent import AgentConfig, NodeAgent
from clm_sandbox.node.images import ImageMapError, ImageMapFile


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m clm_sandbox.nodeagent",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--kubeconfig", type=Path, required=True, help="admin kubeconfig of the control plane"
    )
    parser.add_argument("--node-name", required=True, help="name of the Node to register")
    parser.add_argument(
        "--workdir",
        type=Path,
        required=True,
        help="pod directories (DIR/pods/<namespace>_<pod>/<container>.log, volumes, runs)",
    )
    parser.add_argument(
        "--image-map",
        type=Path,
        required=True,
        help='JSON: {"<image or prefix>": {"argv": [...], "args": [...], "env": {...}, '
        '"workingDir": "...", "user": UID, "paths": [...]}}',
    )
    parser.add_argument("--api-server", help="API server URL for the agent (default: the kubeconfig's)")
    parser.add_argument(
        "--service-host", help="KUBERNETES_SERVICE_HOST for containers (default: the API server's host)"
    )
    parser.add_argument(
        "--service-port",
        type=int,
        help="KUBERNETES_SERVICE_PORT for containers (default: the API server's port)",
    )
    parser.add_argument(
        "--cpu", default=str(os.cpu_count() or 1), help="node cpu capacity (default: this machine's)"
    )
    parser.add_argument(
        "--memory", default="", help="node memory capacity, e.g. 64Gi (default: this machine's)"
    )
    parser.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu capacity (default 0)")
    parser.add_argument("--max-pods", type=int, default=110)
    parser.add_argument(
        "--crash-backoff",
        type=float,
        default=10.0,
        help="seconds of the first CrashLoopBackOff (doubling; default 10 as a kubelet)",
    )
    parser.add_argument("--crash-backoff-max", type=float, default=300.0)
    parser.add_argument(
        "--image-backoff",
        type=float,
        default=10.0,
        help="seconds of the first ImagePullBackOff (doubling up to 300)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=10.0,
        help="at most this many seconds between SIGTERM and SIGKILL when the agent stops",
    )
    parser.add_argument(
        "--orphan-timeout",
        type=float,
        default=120.0,
        help="seconds after which containers of a vanished agent are killed (a restart adopts them before)",
    )
    parser.add_argument("--ready-file", type=Path, help='written ({"node", "pid"}) once the Node is Ready')
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if os.geteuid() != 0:
        print(
            "nodeagent: must run as root (mount namespaces, bind mounts, switching to the pods' users)",
            file=sys.stderr,
        )
        return 2
    for path, flag in ((args.kubeconfig, "--kubeconfig"), (args.image_map, "--image-map")):
        if not path.is_file():
            print(f"nodeagent: {flag} {path}: no such file", file=sys.stderr)
            return 2
    try:
        ImageMapFile(args.image_map)
    except ImageMapError as exc:
        print(f"nodeagent: --image-map: {exc}", file=sys.stderr)
        return 2
    agent_config = AgentConfig(
        kubeconfig=args.kubeconfig,
        node_name=args.node_name,
        workdir=args.workdir.resolve(),
        image_map=args.image_map.resolve(),
        api_server=args.api_server,
        cpu=args.cpu,
        memory=args.memory,
        gpus=args.gpus,
        max_pods=args.max_pods,
        ready_file=args.ready_file,
        crash_backoff_seconds=args.crash_backoff,
        crash_backoff_max_seconds=args.crash_backoff_max,
        image_backoff_seconds=args.image_backoff,
        shutdown_grace_seconds=args.shutdown_grace,
        orphan_seconds=args.orphan_timeout,
    )
    agent = NodeAgent(agent_config)
    server = urlparse(agent.kube.host)
    agent_config.service_host = args.service_host or server.hostname or "127.0.0.1"
    agent_config.service_port = args.service_port or server.port or 443
    agent.services = agent.services_for(agent_config.service_host, agent_config.service_port)

    def stop(signum: int, frame: FrameType | None) -> None:
        agent.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
