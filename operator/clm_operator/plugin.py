"""``kubectl clm``: a kubectl plugin for Models (installed as the console script ``kubectl-clm``).

    kubectl clm train MODEL [--note TEXT]      start a training run from the Model's template
    kubectl clm promote MODEL VERSION          pin spec.productionVersion to VERSION
    kubectl clm rollback MODEL                 pin spec.productionVersion to status.previousProductionVersion
    kubectl clm status MODEL                   production, candidate, conditions and the history
    kubectl clm versions MODEL                 the Model's versions: stage, Sharpe, score, age

Works with any kubeconfig (``--kubeconfig``, ``--context``, ``-n/--namespace``; KUBECONFIG otherwise).
Promotion and rollback are merge patches of the pin: the same one-line change a GitOps repository would
carry, so a later sync from git agrees with it. Errors go to stderr, name the object and the fix, and
exit with status 1.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from clm_contract import GROUP, VERSION

from clm_operator.domain.model_decision import run_phase
from clm_operator.domain.schedule import trained_versions, training_job_for, triggered_run_name
from clm_operator.domain.validation import model_problems, summarize

MODELS = "models"
MODEL_VERSIONS = "modelversions"
TRAINING_JOBS = "trainingjobs"
# The plugin's writes carry its own field manager, so managedFields (and with them a Model's stage
# history, ``by``) name kubectl-clm rather than the client library's user agent.
FIELD_MANAGER = "kubectl-clm"


class PluginError(Exception):
    """A failure with a message for the user: what went wrong with which object, and the fix."""


def _common(parser: argparse.ArgumentParser, top: bool) -> None:
    # The same options are accepted before and after the sub-command (kubectl passes them through as
    # typed); SUPPRESS on the sub-command keeps a top-level value from being overwritten by a default.
    default = None if top else argparse.SUPPRESS
    parser.add_argument("-n", "--namespace", default=default, help="namespace (default: the context's)")
    parser.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument("--context", default=default, help="kubeconfig context to use")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl clm", description="Manage clm.dev Models.")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="start a training run from the Model's template")
    train.add_argument("model")
    train.add_argument("--note", default=None, help="why (recorded in spec.trigger.note)")
    promote = sub.add_parser("promote", help="pin spec.productionVersion to VERSION")
    promote.add_argument("model")
    promote.add_argument("version")
    rollback = sub.add_parser("rollback", help="pin the previous production version")
    rollback.add_argument("model")
    status = sub.add_parser("status", help="production, candidates and history")
    status.add_argument("model")
    versions = sub.add_parser("versions", help="table of the Model's versions")
    versions.add_argument("model")
    for p in (train, promote, rollback, status, versions):
        _common(p, top=False)
    return parser


# ---------------------------------------------------------------------------------------------------
# Formatting (pure, unit-tested)


def age(timestamp: str | None, now: datetime) -> str:
    """kubectl's compact age: 45s, 12m, 5h, 3d."""
    if not timestamp:
        return "<unknown>"
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
             for row in [list(headers), *rows]]
    return "\n".join(lines)


def _num(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def version_row(mv: dict[str, Any], now: datetime) -> list[str]:
    status = mv.get("status") or {}
    backtest = (status.get("metrics") or {}).get("backtest") or {}
    evaluation = status.get("evaluation") or {}
    return [
        str((mv.get("spec") or {}).get("version") or mv["metadata"]["name"]),
        str(status.get("stage") or "-"),
        _num(backtest.get("sharpe")),
        _num(evaluation.get("score")),
        age(mv["metadata"].get("creationTimestamp"), now),
    ]


def format_versions(mvs: Sequence[dict[str, Any]], now: datetime) -> str:
    ordered = sorted(mvs, key=lambda m: str((m.get("spec") or {}).get("version") or m["metadata"]["name"]),
                     reverse=True)
    return table(["VERSION", "STAGE", "SHARPE", "SCORE", "AGE"], [version_row(m, now) for m in ordered])


def format_status(model: dict[str, Any], mvs: Sequence[dict[str, Any]], now: datetime) -> str:
    spec = model.get("spec") or {}
    status = model.get("status") or {}
    name = model["metadata"]["name"]
    lines = [
        f"Model:       {model['metadata'].get('namespace', '')}/{name}",
        f"Policy:      {(spec.get('promotion') or {}).get('policy', 'AutoCandidate')}",
        f"Pinned:      {spec.get('productionVersion') or '-'}",
        f"Production:  {status.get('productionVersion') or '-'}",
        f"Previous:    {status.get('previousProductionVersion') or '-'}",
        f"Candidate:   {status.get('candidateVersion') or '-'}",
    ]
    if status.get("shadowVersion"):
        lines.append(f"Shadow:      {status['shadowVersion']}")
    schedule = spec.get("schedule") or "default period"
    if spec.get("suspend"):
        schedule += " (suspended)"
    lines.append(f"Schedule:    {schedule}; next {status.get('nextScheduleTime') or '-'}")
    if status.get("activeTrainingJobs"):
        lines.append(f"Training:    {', '.join(status['activeTrainingJobs'])}")
    conditions = status.get("conditions") or []
    if conditions:
        lines.append("")
        lines.append(table(["CONDITION", "STATUS", "REASON", "MESSAGE"],
                           [[str(c.get("type", "")), str(c.get("status", "")), str(c.get("reason", "")),
                             str(c.get("message", ""))] for c in conditions]))
    candidates = [m for m in mvs if (m.get("status") or {}).get("stage") in ("Candidate", "Shadow")]
    if candidates:
        lines.append("")
        lines.append("Candidates:")
        lines.append(format_versions(candidates, now))
    history = status.get("history") or []
    lines.append("")
    if history:
        lines.append("History:")
        lines.append(table(["TIME", "FROM", "TO", "REASON", "BY"],
                           [[str(h.get("time", "")), str(h.get("from") or "-"), str(h.get("to") or "-"),
                             str(h.get("reason", "")), str(h.get("by", ""))] for h in history]))
    else:
        lines.append("History:    (no production change yet)")
    return "\n".join(lines)


def find_version(mvs: Sequence[dict[str, Any]], ref: str) -> dict[str, Any] | None:
    for mv in mvs:
        if ref in ((mv.get("spec") or {}).get("version"), mv["metadata"]["name"]):
            return mv
    return None


# ---------------------------------------------------------------------------------------------------
# Cluster access


class Cluster:
    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        try:
            config.load_kube_config(config_file=kubeconfig, context=context)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                active = next((c for c in contexts if c["name"] == context), active)
        except (ConfigException, OSError, TypeError) as exc:
            raise PluginError(
                f"cannot load the kubeconfig ({exc}): pass --kubeconfig FILE or set KUBECONFIG") from None
        self.namespace = namespace or (active.get("context") or {}).get("namespace") or "default"
        self.api = client.CustomObjectsApi()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise PluginError(
                    f"{what} not found in namespace {self.namespace!r}: check the name with "
                    f"'kubectl get mdl -n {self.namespace}' or pass -n NAMESPACE") from None
            if exc.status == 403:
                raise PluginError(f"not allowed to access {what} in namespace {self.namespace!r}: "
                                  "ask for RBAC on clm.dev resources") from None
            raise PluginError(
                f"{what}: the API server answered {exc.status} {exc.reason}: {exc.body}") from None
        except HTTPError as exc:
            raise PluginError(f"cannot reach the API server ({exc}): check --kubeconfig/--context") from None

    def model(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(f"Model {name!r}", self.api.get_namespaced_custom_object,
                                            GROUP, VERSION, self.namespace, MODELS, name)
        return result

    def versions(self, model: str) -> list[dict[str, Any]]:
        listed = self._call("ModelVersions", self.api.list_namespaced_custom_object,
                            GROUP, VERSION, self.namespace, MODEL_VERSIONS)
        return [mv for mv in listed.get("items", []) if (mv.get("spec") or {}).get("modelName") == model]

    def training_jobs(self, model: str) -> list[dict[str, Any]]:
        listed = self._call("TrainingJobs", self.api.list_namespaced_custom_object,
                            GROUP, VERSION, self.namespace, TRAINING_JOBS)
        return [tj for tj in listed.get("items", []) if (tj.get("spec") or {}).get("modelName") == model]

    def pin(self, model: str, version: str) -> None:
        self._call(f"Model {model!r}", self.api.patch_namespaced_custom_object,
                   GROUP, VERSION, self.namespace, MODELS, model, {"spec": {"productionVersion": version}},
                   field_manager=FIELD_MANAGER)

    def create_training_job(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            f"TrainingJob {body['metadata']['name']!r}", self.api.create_namespaced_custom_object,
            GROUP, VERSION, self.namespace, TRAINING_JOBS, body, field_manager=FIELD_MANAGER)
        return result


def refuse_unaccepted(model: dict[str, Any]) -> None:
    """A run of a Model the operator does not accept would never be recorded by it: refuse to start one.

    The spec is checked here with the operator's own rules (domain/validation.py), so a Model just applied
    is refused before the operator has looked at it; its Accepted=False condition is honoured too.
    """
    name = model["metadata"]["name"]
    problems = model_problems(model)
    if problems:
        raise PluginError(f"Model {name!r} is not valid ({summarize(problems)}): fix its spec; no run was "
                          "started")
    for condition in (model.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Accepted" and condition.get("status") == "False":
            raise PluginError(f"Model {name!r} is not Accepted by the operator ({condition.get('reason')}: "
                              f"{condition.get('message')}): fix its spec; no run was started")


def _requested_by() -> str:
    try:
        return f"kubectl-clm ({getpass.getuser()})"
    except (KeyError, OSError):
        return "kubectl-clm"


def run(args: argparse.Namespace, cluster: Cluster, now: datetime) -> str:
    model = cluster.model(args.model)
    if args.command == "train":
        refuse_unaccepted(model)
        name = triggered_run_name(args.model, "manual", uuid.uuid4().hex)
        # every version the Model already trained is a trial of this one's DSR, as for scheduled runs
        prior = trained_versions([run_phase(tj) for tj in cluster.training_jobs(args.model)])
        body = training_job_for(model, name, "manual", _requested_by(), note=args.note, prior_trials=prior)
        body["metadata"]["namespace"] = cluster.namespace
        cluster.create_training_job(body)
        return f"trainingjob.{GROUP}/{name} created for Model {args.model}"
    mvs = cluster.versions(args.model)
    if args.command == "promote":
        mv = find_version(mvs, args.version)
        if mv is None:
            known = ", ".join(sorted(str((m.get("spec") or {}).get("version")) for m in mvs)) or "none yet"
            raise PluginError(f"Model {args.model!r} has no version {args.version!r} (versions: {known}): "
                              f"see 'kubectl clm versions {args.model}'")
        version = str((mv.get("spec") or {}).get("version") or args.version)
        cluster.pin(args.model, version)
        stage = (mv.get("status") or {}).get("stage")
        note = ""
        if stage == "Failed":
            note = (f"\nwarning: {version} failed its criteria; the operator refuses the pin unless "
                    f"the Model is annotated clm.dev/allow-failed-promotion={version}")
        return f"model.{GROUP}/{args.model} pinned to {version}{note}"
    if args.command == "rollback":
        status = model.get("status") or {}
        previous = status.get("previousProductionVersion")
        if not previous:
            raise PluginError(f"Model {args.model!r} has no status.previousProductionVersion to roll "
                              f"back to: pin a version with 'kubectl clm promote {args.model} VERSION'")
        if find_version(mvs, previous) is None:
            raise PluginError(f"the previous version {previous!r} of Model {args.model!r} no longer exists "
                              f"(pruned by retention?): pick one from 'kubectl clm versions {args.model}'")
        cluster.pin(args.model, str(previous))
        return (f"model.{GROUP}/{args.model} rolled back: pinned to {previous} "
                f"(was {status.get('productionVersion') or '-'})")
    if args.command == "status":
        return format_status(model, mvs, now)
    if args.command == "versions":
        if not mvs:
            return f"No versions of Model {args.model} yet: start one with 'kubectl clm train {args.model}'"
        return format_versions(mvs, now)
    raise PluginError(f"unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cluster = Cluster(args.kubeconfig, args.context, args.namespace)
        print(run(args, cluster, datetime.now(UTC)))
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
