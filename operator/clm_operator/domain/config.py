"""The operator's configuration, read from the environment (documented in runner.py).

Pure: ``OperatorConfig.from_env`` takes the mapping, it does not read ``os.environ`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_TRAINER_IMAGE = "ghcr.io/clm-dev/clm-trainer:0.1.0"
DEFAULT_OUTPUT_URI = "s3://clm-models/models"


class ConfigError(ValueError):
    pass


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean: use true or false")


def _optional_int(environ: Mapping[str, str], name: str) -> int | None:
    raw = environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must be >= 0")
    return value


@dataclass(frozen=True)
class OperatorConfig:
    trainer_image: str = DEFAULT_TRAINER_IMAGE
    image_pull_policy: str = "IfNotPresent"
    output_uri: str = DEFAULT_OUTPUT_URI
    s3_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    s3_path_style: bool = False
    # Credentials reach the trainer only through secretKeyRef; no secret name: the pod's own identity
    # (IRSA / workload identity) is used.
    s3_secret_name: str | None = "clm-s3-credentials"
    s3_access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    s3_secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"
    trainer_service_account: str | None = None
    default_ttl_seconds_after_finished: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OperatorConfig:
        secret = environ.get("CLM_S3_SECRET_NAME", cls.s3_secret_name or "")
        policy = environ.get("CLM_IMAGE_PULL_POLICY", cls.image_pull_policy)
        if policy not in ("Always", "IfNotPresent", "Never"):
            raise ConfigError(f"CLM_IMAGE_PULL_POLICY={policy!r}: use Always, IfNotPresent or Never")
        output_uri = environ.get("CLM_OUTPUT_URI", DEFAULT_OUTPUT_URI)
        if not output_uri.startswith(("s3://", "file://")):
            raise ConfigError(f"CLM_OUTPUT_URI={output_uri!r}: use s3://bucket/prefix or file:///path")
        return cls(
            trainer_image=environ.get("CLM_TRAINER_IMAGE", DEFAULT_TRAINER_IMAGE),
            image_pull_policy=policy,
            output_uri=output_uri,
            s3_endpoint_url=environ.get("CLM_S3_ENDPOINT_URL") or None,
            aws_region=environ.get("AWS_REGION", cls.aws_region) or cls.aws_region,
            s3_path_style=_bool(environ, "CLM_S3_PATH_STYLE", False),
            s3_secret_name=secret or None,
            s3_access_key_id_key=environ.get("CLM_S3_ACCESS_KEY_ID_KEY", cls.s3_access_key_id_key),
            s3_secret_access_key_key=environ.get("CLM_S3_SECRET_ACCESS_KEY_KEY",
                                                 cls.s3_secret_access_key_key),
            trainer_service_account=environ.get("CLM_TRAINER_SERVICE_ACCOUNT") or None,
            default_ttl_seconds_after_finished=_optional_int(environ, "CLM_JOB_TTL_SECONDS_AFTER_FINISHED"),
        )
