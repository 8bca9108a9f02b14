"""``clm-operator run``: the operator process (kopf), its /healthz and its Prometheus /metrics.

Flags:
  --namespace NS (repeatable)   watch only these namespaces (namespaced RBAC is enough)
  --all-namespaces              watch the whole cluster (the default when no --namespace is given and
                                CLM_WATCH_NAMESPACES is empty)
  --metrics-port 8080           prometheus-client /metrics (0 disables)
  --health-port 8081            kopf's liveness endpoint /healthz (0 disables)
  --webhook-port 8443           the Alertmanager webhook (served by handlers/webhook.py; 0 disables)
  --resync-seconds 10           how often an unfinished TrainingJob is re-checked (startup timeout,
                                missed events); also CLM_RESYNC_SECONDS
  --log-level INFO, --log-format json|text (also CLM_LOG_LEVEL, CLM_LOG_FORMAT)
A flag that is given wins over its variable, except --webhook-port (CLM_WEBHOOK_PORT wins).

Environment: every setting is parsed once, before the handlers are registered, into OperatorConfig
(domain/config.py; defaults in brackets); nothing else in the operator reads the environment.
  CLM_TRAINER_IMAGE [ghcr.io/clm-dev/clm-trainer:0.1.0]   image of the trainer Jobs (spec.image wins)
  CLM_IMAGE_PULL_POLICY [IfNotPresent]
  CLM_OUTPUT_URI [s3://clm-models/models]                 storage root handed to the trainer
  CLM_S3_ENDPOINT_URL [unset: AWS]                        S3-compatible endpoint (MinIO, moto, ...)
  AWS_REGION [us-east-1], CLM_S3_PATH_STYLE [false]
  CLM_S3_SECRET_NAME [clm-s3-credentials]                 Secret the trainer's credentials come from
                                                          (secretKeyRef only; empty: pod identity)
  CLM_S3_ACCESS_KEY_ID_KEY [AWS_ACCESS_KEY_ID], CLM_S3_SECRET_ACCESS_KEY_KEY [AWS_SECRET_ACCESS_KEY]
  CLM_TRAINER_SERVICE_ACCOUNT [unset], CLM_JOB_TTL_SECONDS_AFTER_FINISHED [unset]
  CLM_ALLOWED_IMAGE_PREFIXES [unset: any image]           comma-separated prefixes spec.image must have
  CLM_ALLOW_RUN_TOLERATIONS [true], CLM_ALLOW_RUN_PRIORITY_CLASS [true]  may a run set them
  CLM_WATCH_NAMESPACES [unset]                            comma-separated, like repeated --namespace
  CLM_RESYNC_SECONDS [10], CLM_SCHEDULE_INTERVAL_SECONDS [30]  the TrainingJob and Model timers
  CLM_BIND_ADDRESS [0.0.0.0]                              address of /metrics, /healthz (and the webhook)
  CLM_WEBHOOK_PORT [unset: the flag], CLM_WEBHOOK_HOST [CLM_BIND_ADDRESS], CLM_WEBHOOK_NAMESPACE [unset]
  CLM_WEBHOOK_TOKEN_FILE / CLM_WEBHOOK_TOKEN [unset: every webhook request is refused]
  CLM_CLOCK_FILE [unset]                                  a controllable "now" for tests (clock.py)
  KUBECONFIG / in-cluster service account                 how the operator reaches the API server
The operator reads manifest.json (the result's durable copy) with its own AWS_* credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import kopf
from prometheus_client import start_http_server

from clm_operator import clock
from clm_operator.domain.config import ConfigError, OperatorConfig
from clm_operator.observability.logging import configure

log = logging.getLogger("clm_operator.runner")
FINALIZER = "clm.dev/finalizer"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument("--metrics-port", type=int, default=8080, help="/metrics port (0: off)")
    parser.add_argument("--health-port", type=int, default=8081, help="/healthz port (0: off)")
    parser.add_argument("--webhook-port", type=int, default=8443, help="Alertmanager webhook port (0: off)")
    parser.add_argument("--resync-seconds", type=float, default=None,
                        help="re-check interval of unfinished TrainingJobs (default: CLM_RESYNC_SECONDS, 10)")
    parser.add_argument("--log-level", default=None, help="default: CLM_LOG_LEVEL, INFO")
    parser.add_argument("--log-format", choices=("json", "text"), default=None,
                        help="default: CLM_LOG_FORMAT, json")


def settings() -> kopf.OperatorSettings:
    configured = kopf.OperatorSettings()
    # Progress and diff-base live in our own annotations: the status schema is structural and would
    # prune kopf's default status.kopf field, and a foreign annotation prefix confuses people.
    configured.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="clm.dev")
    configured.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="clm.dev", key="last-handled-configuration")
    configured.persistence.finalizer = FINALIZER
    # Our own Events carry the domain reasons; kopf posts only its warnings and errors.
    configured.posting.level = logging.WARNING
    configured.posting.reporting_component = "clm-operator"
    configured.peering.standalone = True
    configured.watching.server_timeout = 270
    configured.watching.client_timeout = 300
    configured.watching.connect_timeout = 10
    configured.networking.request_timeout = 60
    configured.networking.connect_timeout = 10
    return configured


def _host(address: str) -> str:
    """An address as the host part of a URL (an IPv6 literal in brackets)."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def namespaces_from(args: argparse.Namespace, config: OperatorConfig | None = None) -> list[str]:
    if args.all_namespaces:
        return []
    if args.namespace:
        return list(args.namespace)
    return list(config.watch_namespaces) if config is not None else []


def configuration(args: argparse.Namespace) -> OperatorConfig:
    """The environment parsed once, with the flags that were given applied (ConfigError when invalid)."""
    return OperatorConfig.load().with_flags(resync_seconds=args.resync_seconds, log_level=args.log_level,
                                            log_format=args.log_format)


def main(args: argparse.Namespace) -> int:
    try:
        config = configuration(args)
    except ConfigError as error:
        print(f"clm-operator: bad configuration: {error}", file=sys.stderr)
        return 2
    configure(config.log_level, json_format=config.log_format == "json")
    clock.use_file(config.clock_file)

    from clm_operator import handlers

    kopf_settings = settings()
    handlers.register(config, webhook_port_flag=args.webhook_port, kopf_settings=kopf_settings)

    if args.metrics_port:
        try:
            start_http_server(args.metrics_port, addr=config.bind_address)
        except OSError as error:
            print(f"clm-operator: cannot serve /metrics on port {args.metrics_port}: {error}; "
                  "pick a free port with --metrics-port (0 disables)", file=sys.stderr)
            return 2
    namespaces = namespaces_from(args, config)
    liveness = f"http://{_host(config.bind_address)}:{args.health_port}/healthz" if args.health_port else None
    log.info("starting", extra={"namespaces": namespaces or "all", "metrics_port": args.metrics_port,
                                "health_port": args.health_port, "bind_address": config.bind_address,
                                "output_uri": config.output_uri,
                                "trainer_image": config.trainer_image,
                                "resync_seconds": config.resync_seconds})
    asyncio.run(kopf.operator(
        clusterwide=not namespaces, namespaces=namespaces, standalone=True, liveness_endpoint=liveness,
        settings=kopf_settings,
    ))
    return 0
