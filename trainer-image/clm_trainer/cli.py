"""``clm-trainer run``: train one model version from a TrainingJob spec (docs/architecture.md sections
5 and 6).

The operator runs exactly ``clm-trainer run --spec-env CLM_TRAINING_SPEC`` with everything else in the
environment; people run it with ``--spec examples/trainingjob-xgboost.yaml --output file:///tmp/models``.

Exit codes: 0 ok; 2 permanent (bad spec, bad data, unknown algorithm, version already stored: never
retried); 1 transient (storage unreachable and anything unexpected: retried up to backoffLimit). The
compact TrainerResult JSON goes to the termination-message path on success and on failure; a failure
is also one line on stderr naming the field and the fix.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from clm_contract.hyperparameters import HyperparameterError
from clm_contract.trainer_contract import (
    DEFAULT_TERMINATION_LOG,
    ENV_NAMESPACE,
    ENV_OUTPUT_URI,
    ENV_SPEC_JSON,
    ENV_TERMINATION_LOG,
    ENV_VERSION,
    ExitCode,
    TrainerResult,
)
from clm_contract.training_job import TrainingJobSpec
from pydantic import ValidationError

from clm_trainer import logging_setup

log = logging.getLogger("clm_trainer.cli")

VERSION_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
DEFAULT_OUTPUT = "file://./clm-models"


class SpecError(Exception):
    """The spec cannot be read or is invalid: permanent (exit 2), with the field and the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# ------------------------------------------------------------------------------------------- spec


def _read_spec_document(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Any, str]:
    """The raw spec document and where it came from (for messages)."""
    if args.spec:
        path = Path(args.spec)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError("--spec", f"cannot read {path}: {exc.strerror or exc}; pass a readable YAML/JSON "
                                      "file") from exc
        source = str(path)
    elif args.spec_json is not None:
        text, source = args.spec_json, "--spec-json"
    else:
        var = args.spec_env or ENV_SPEC_JSON
        if var not in env or not env[var].strip():
            raise SpecError("--spec-env", f"environment variable {var} is not set or empty; set it to the "
                                          "TrainingJob spec as JSON, or pass --spec FILE")
        text, source = env[var], f"${var}"
    # JSON first: the operator passes the spec as ASCII JSON, where an emoji is a surrogate pair
    # ("\ud83d\ude00"). PyYAML decodes each half on its own, and the lone surrogates it returns are
    # not a valid string to pydantic; json joins them.
    try:
        return json.loads(text), source
    except ValueError:
        pass
    try:
        return yaml.safe_load(text), source
    except yaml.YAMLError as exc:
        raise SpecError("spec", f"{source} is not valid YAML/JSON ({exc}); fix the syntax") from exc


def _unwrap_manifest(document: Any, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Accept a full TrainingJob manifest (take .spec) or a bare spec; return (spec, metadata)."""
    if not isinstance(document, dict):
        raise SpecError("spec", f"{source} must hold a mapping (a TrainingJob manifest or its spec), "
                                f"got {type(document).__name__}")
    if "kind" in document or "apiVersion" in document:
        if document.get("kind") != "TrainingJob":
            raise SpecError("kind", f"{source} is a {document.get('kind')!r}, not a TrainingJob; pass a "
                                    "TrainingJob manifest or a bare spec")
        spec = document.get("spec")
        if not isinstance(spec, dict):
            raise SpecError("spec", f"{source} has no spec mapping; add the TrainingJob's spec")
        metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
        return spec, metadata or {}
    return document, {}


def _field_of(error: Mapping[str, Any]) -> str:
    """pydantic's error location as the spec path (``spec.resources.gpu``)."""
    ctx = error.get("ctx") or {}
    original = ctx.get("error")
    if isinstance(original, HyperparameterError):
        return str(original.field)
    loc = [str(part) for part in error.get("loc", ())]
    if loc:
        return "spec." + ".".join(loc)
    # Model-level validators name the field at the start of their message ("evaluation.embargoBars (3) ...").
    match = re.search(r"\b([a-z][A-Za-z]*(?:\.[a-z][A-Za-z]*)+)\b", str(error.get("msg", "")))
    return f"spec.{match.group(1)}" if match else "spec"


def _fix_of(error: Mapping[str, Any], field: str) -> str:
    kind = error.get("type", "")
    original = (error.get("ctx") or {}).get("error")
    if kind == "missing":
        return f"add {field}"
    if kind == "extra_forbidden" or (isinstance(original, HyperparameterError)
                                     and "unknown hyperparameter" in original.detail):
        return f"remove {field} or correct its spelling (unknown fields are rejected)"
    if field == "spec.evaluation.embargoBars":
        return f"raise {field} to at least spec.target.horizonBars, or omit it (it defaults to horizonBars)"
    return f"set {field} to a valid value"


def parse_spec(raw: dict[str, Any]) -> TrainingJobSpec:
    try:
        return TrainingJobSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _field_of(first)
        original = (first.get("ctx") or {}).get("error")
        if isinstance(original, HyperparameterError):
            msg = original.detail
        else:
            msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
            shows_input = first.get("type") not in ("missing", "extra_forbidden") and first.get("loc")
            if "input" in first and shows_input:
                msg = f"{msg} (got {first['input']!r})"
        more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise SpecError(field, f"{msg}; fix: {_fix_of(first, field)}{more}") from exc


# -------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--spec", metavar="FILE", help="TrainingJob manifest or bare spec (YAML or JSON)")
    source.add_argument("--spec-json", metavar="JSON", help="the spec as a JSON string")
    source.add_argument("--spec-env", metavar="VAR", help=f"read the spec JSON from this env var "
                                                         f"(default {ENV_SPEC_JSON})")
    parser.add_argument("--output", metavar="URI", help=f"storage root, file:///dir or s3://bucket/prefix "
                                                       f"(env {ENV_OUTPUT_URI}; default {DEFAULT_OUTPUT})")
    parser.add_argument("--namespace", help=f"namespace part of the artifact path (env {ENV_NAMESPACE}; "
                                            "default: the manifest's metadata.namespace, else 'default')")
    parser.add_argument("--version", dest="model_version", metavar="VERSION",
                        help=f"model version (env {ENV_VERSION}; default derived from the spec)")
    parser.add_argument("--termination-log", metavar="PATH",
                        help=f"where to write the result JSON (env {ENV_TERMINATION_LOG}; "
                             f"default {DEFAULT_TERMINATION_LOG})")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _resolve_output(value: str) -> str:
    # A relative file:// path is resolved against the working directory, which storage needs absolute.
    if value.startswith("file://") and not value.startswith("file:///"):
        return "file://" + str(Path(value[len("file://"):]).resolve())
    return value


def write_termination_message(path: str, result: TrainerResult) -> None:
    try:
        Path(path).write_text(result.to_termination_message(), encoding="utf-8")
    except OSError as exc:
        log.warning("%s", logging_setup.kv(event="termination_log_unwritable", path=path,
                                           error=exc.strerror or str(exc)))


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    from clm_contract.storage import ArtifactExistsError, S3Settings, StorageError  # noqa: PLC0415

    from clm_trainer.data import DataError  # noqa: PLC0415 - imports pandas; keep --help light
    from clm_trainer.models import UnknownAlgorithmError  # noqa: PLC0415
    from clm_trainer.pipeline import RunOptions, TrainerFailure, default_version, run_pipeline  # noqa: PLC0415

    environ = os.environ if env is None else env
    termination_log = args.termination_log or environ.get(ENV_TERMINATION_LOG) or DEFAULT_TERMINATION_LOG
    version: str | None = None

    def fail(code: ExitCode, reason: str, message: str, field: str | None) -> int:
        where = f"{field}: " if field and not message.startswith(field) else ""
        line = f"error: {reason}: {where}{message}"
        print(line.replace("\n", " "), file=sys.stderr, flush=True)
        write_termination_message(termination_log, TrainerResult(
            status="Failed", exit_code=int(code), version=version, reason=reason, message=message,
            field=field))
        return int(code)

    try:
        document, source = _read_spec_document(args, environ)
        raw, metadata = _unwrap_manifest(document, source)
        spec = parse_spec(raw)
        version = args.model_version or environ.get(ENV_VERSION) or default_version(spec)
        if not VERSION_PATTERN.match(version) or len(version) > 63:
            raise SpecError("--version", f"{version!r} is not a valid version; use lower-case letters, "
                                         "digits, '-' and '.', at most 63 characters")
        namespace = (args.namespace or environ.get(ENV_NAMESPACE)
                     or str(metadata.get("namespace") or "default"))
        output = _resolve_output(args.output or environ.get(ENV_OUTPUT_URI) or DEFAULT_OUTPUT)
    except SpecError as exc:
        return fail(ExitCode.PERMANENT, "InvalidSpec", exc.message, exc.field)

    logging_setup.event("start", model=spec.model_name, algorithm=str(spec.algorithm), version=version,
                        namespace=namespace, output=output)
    try:
        outcome = run_pipeline(spec, RunOptions(output_uri=output, namespace=namespace, version=version,
                                                s3=S3Settings.from_env(environ)))
    except TrainerFailure as exc:
        return fail(exc.exit_code, exc.reason, exc.message, exc.field)
    except DataError as exc:
        return fail(ExitCode.PERMANENT, "BadData", f"{exc}", getattr(exc, "field", "spec.dataset.uri"))
    except UnknownAlgorithmError as exc:
        return fail(ExitCode.PERMANENT, "UnknownAlgorithm", str(exc), exc.field)
    except ArtifactExistsError as exc:
        return fail(ExitCode.PERMANENT, "ArtifactExists",
                    f"version {version} already has files at {exc.uri}; pass --version or delete them",
                    "--version")
    except StorageError as exc:
        return fail(ExitCode.TRANSIENT, "StorageUnavailable", str(exc), None)
    except MemoryError:
        return fail(ExitCode.TRANSIENT, "OutOfMemory", "the trainer ran out of memory; raise "
                                                      "spec.resources.memory or shorten the dataset",
                    "spec.resources.memory")
    except Exception as exc:  # noqa: BLE001 - the operator needs a result for every failure
        log.exception("unexpected failure")
        return fail(ExitCode.TRANSIENT, "InternalError", f"{type(exc).__name__}: {exc}", None)

    result = outcome.result
    write_termination_message(termination_log, result)
    evaluation = result.evaluation
    logging_setup.event("done", version=version, artifact=result.artifact.uri if result.artifact else "",
                        passed=bool(evaluation and evaluation.passed),
                        score=evaluation.score if evaluation else 0.0,
                        duration_s=result.duration_seconds or 0.0)
    print(json.dumps({"version": version, "manifest": result.manifest_uri, "report": result.report_uri,
                      "passed": bool(evaluation and evaluation.passed),
                      "score": evaluation.score if evaluation else None}))
    return int(ExitCode.OK)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clm-trainer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    add_arguments(commands.add_parser("run", help="train, evaluate and store one model version"))
    args = parser.parse_args(argv)
    logging_setup.configure(logging.DEBUG if args.verbose else logging.INFO)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
