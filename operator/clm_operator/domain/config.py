"""The operator's configuration: every setting, parsed once (pydantic-settings) before the handlers load.

``clm-operator run`` (runner.py) calls ``OperatorConfig.load()`` once, applies its flags
with ``with_flags`` and hands the result to the handlers; nothing else in the operator reads the
environment. ``from_env`` takes the mapping as an argument, so parsing is testable without touching
``os.environ``. Each field's environment variable is its ``validation_alias``; the list with defaults is
in runner.py's docstring and docs/architecture.md ("Configuration").
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TRAINER_IMAGE = "ghcr.io/clm-dev/clm-trainer:0.1.0"
DEFAULT_OUTPUT_URI = "s3://clm-models/models"
DEFAULT_WEBHOOK_PORT = 8443


class ConfigError(ValueError):
    pass


class OperatorConfig(BaseSettings):
    """Settings of one operator process. Frozen: a handler can never change what another one sees."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True, populate_by_name=True)

    # What the trainer Jobs get (domain/jobspec.py).
    trainer_image: str = Field(DEFAULT_TRAINER_IMAGE, validation_alias="CLM_TRAINER_IMAGE", min_length=1)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", validation_alias="CLM_IMAGE_PULL_POLICY")
    output_uri: str = Field(DEFAULT_OUTPUT_URI, validation_alias="CLM_OUTPUT_URI")
    s3_endpoint_url: str | None = Field(None, validation_alias="CLM_S3_ENDPOINT_URL")
    aws_region: str = Field("us-east-1", validation_alias="AWS_REGION")
    s3_path_style: bool = Field(False, validation_alias="CLM_S3_PATH_STYLE")
    # Credentials reach the trainer only through secretKeyRef; no secret name (empty): the pod's own
    # identity (IRSA / workload identity) is used.
    s3_secret_name: str | None = Field("clm-s3-credentials", validation_alias="CLM_S3_SECRET_NAME")
    s3_access_key_id_key: str = Field("AWS_ACCESS_KEY_ID", validation_alias="CLM_S3_ACCESS_KEY_ID_KEY")
    s3_secret_access_key_key: str = Field("AWS_SECRET_ACCESS_KEY",
                                          validation_alias="CLM_S3_SECRET_ACCESS_KEY_KEY")
    trainer_service_account: str | None = Field(None, validation_alias="CLM_TRAINER_SERVICE_ACCOUNT")
    default_ttl_seconds_after_finished: int | None = Field(
        None, ge=0, validation_alias="CLM_JOB_TTL_SECONDS_AFTER_FINISHED")

    # What a TrainingJob may ask for (domain/run.py ``refused_fields``; chart values ``policy``). A run
    # asking for more fails with Accepted=False reason NotAllowedByOperator naming the field.
    allowed_image_prefixes: tuple[str, ...] = Field((), validation_alias="CLM_ALLOWED_IMAGE_PREFIXES")
    allow_run_tolerations: bool = Field(True, validation_alias="CLM_ALLOW_RUN_TOLERATIONS")
    allow_run_priority_class: bool = Field(True, validation_alias="CLM_ALLOW_RUN_PRIORITY_CLASS")

    # How the operator runs (runner.py, handlers/__init__.py).
    watch_namespaces: tuple[str, ...] = Field((), validation_alias="CLM_WATCH_NAMESPACES")
    resync_seconds: float = Field(10.0, gt=0, validation_alias="CLM_RESYNC_SECONDS")
    schedule_interval_seconds: float = Field(30.0, gt=0, validation_alias="CLM_SCHEDULE_INTERVAL_SECONDS")
    log_level: str = Field("INFO", validation_alias="CLM_LOG_LEVEL")
    log_format: Literal["json", "text"] = Field("json", validation_alias="CLM_LOG_FORMAT")
    clock_file: Path | None = Field(None, validation_alias="CLM_CLOCK_FILE")

    # The Alertmanager webhook (handlers/webhook.py). The port: the variable wins over the flag.
    webhook_port: int | None = Field(None, ge=0, le=65535, validation_alias="CLM_WEBHOOK_PORT")
    # Address of /metrics and /healthz, and of the webhook unless CLM_WEBHOOK_HOST says otherwise. In a pod
    # 0.0.0.0 is the pod's own network namespace (the kubelet's probes and Prometheus reach the pod IP);
    # a process on a shared host (the sandbox) binds 127.0.0.1.
    bind_address: str = Field("0.0.0.0", min_length=1, validation_alias="CLM_BIND_ADDRESS")
    webhook_host: str | None = Field(None, validation_alias="CLM_WEBHOOK_HOST")
    webhook_token_file: Path | None = Field(None, validation_alias="CLM_WEBHOOK_TOKEN_FILE")
    webhook_token: SecretStr | None = Field(None, validation_alias="CLM_WEBHOOK_TOKEN")
    webhook_namespace: str | None = Field(None, validation_alias="CLM_WEBHOOK_NAMESPACE")

    @field_validator("s3_endpoint_url", "s3_secret_name", "trainer_service_account",
                     "default_ttl_seconds_after_finished", "clock_file", "webhook_port", "webhook_token_file",
                     "webhook_token", "webhook_namespace", "webhook_host", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """An empty variable means "not set" (a chart renders unset values as "")."""
        return None if value == "" else value

    @field_validator("s3_path_style", "allow_run_tolerations", "allow_run_priority_class", mode="before")
    @classmethod
    def _boolean(cls, value: Any) -> Any:
        """Empty is false; otherwise one of the usual spellings, or an error saying which to use."""
        if not isinstance(value, str):
            return value
        lowered = value.strip().lower()
        if lowered in ("", "0", "false", "no", "off"):
            return False
        if lowered in ("1", "true", "yes", "on"):
            return True
        raise ValueError("not a boolean: use true or false")

    @field_validator("aws_region", "log_level", "bind_address", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any, info: Any) -> Any:
        if value == "":
            return cls.model_fields[info.field_name].default
        return value

    @field_validator("output_uri")
    @classmethod
    def _storage_uri(cls, value: str) -> str:
        if not value.startswith(("s3://", "file://")):
            raise ValueError("use s3://bucket/prefix or file:///path")
        return value

    @field_validator("watch_namespaces", "allowed_image_prefixes", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @classmethod
    def load(cls) -> OperatorConfig:
        """Read the process environment (pydantic-settings' env source); runner.py calls this once."""
        try:
            return cls()
        except ValidationError as error:
            raise ConfigError(_explain(cls, error)) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OperatorConfig:
        """Parse ``environ`` (pure: never reads os.environ). Raises ConfigError naming the variable."""
        try:
            return cls.model_validate(dict(environ))
        except ValidationError as error:
            raise ConfigError(_explain(cls, error)) from None

    def with_flags(self, **flags: Any) -> OperatorConfig:
        """A copy with the command-line flags that were given (None: not given) applied and validated."""
        given = {name: value for name, value in flags.items() if value is not None}
        if not given:
            return self
        try:
            return type(self).model_validate({**self.model_dump(), **given})
        except ValidationError as error:
            raise ConfigError(_explain(type(self), error, flags=True)) from None

    def listen_port(self, flag: int | None = None) -> int:
        """The webhook's port: CLM_WEBHOOK_PORT, else ``--webhook-port``, else 8443; 0 disables it."""
        if self.webhook_port is not None:
            return self.webhook_port
        return DEFAULT_WEBHOOK_PORT if flag is None else flag

    def webhook_address(self) -> str:
        """Where the webhook listens: CLM_WEBHOOK_HOST, else CLM_BIND_ADDRESS."""
        return self.webhook_host or self.bind_address

    def expected_webhook_token(self) -> str | None:
        """The token the webhook requires: the file's content (re-read on every call, so a rotated
        Secret applies without a restart), else CLM_WEBHOOK_TOKEN; None refuses every request."""
        if self.webhook_token_file is not None:
            try:
                token = self.webhook_token_file.read_text().strip()
            except OSError:
                return None
            return token or None
        return self.webhook_token.get_secret_value() if self.webhook_token is not None else None


def _explain(cls: type[OperatorConfig], error: ValidationError, *, flags: bool = False) -> str:
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "?"
        field = cls.model_fields.get(name)
        alias = field.validation_alias if field is not None else None
        if isinstance(alias, str) and not flags:
            name = alias
        got = item.get("input")
        problems.append(f"{name}={got!r}: {item['msg']}")
    return "; ".join(problems)
