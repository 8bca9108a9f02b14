"""Structured (JSON-lines) logs; values of keys that look like secrets are never written."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_SECRET_KEY = re.compile(r"(secret|password|token|credential|access_key|authorization)", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"(?i)(aws_secret_access_key|aws_access_key_id|authorization|token)([=:]\s*)\S+")
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}
# kopf's per-object logger attaches its whole settings object and a posting flag: noise in a log line.
_SKIPPED = _STANDARD | {"settings", "k8s_skip"}


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-looking keys masked (recursively) and key=value secrets in text."""
    if isinstance(value, dict):
        return {key: ("***" if isinstance(key, str) and _SECRET_KEY.search(key) else redact(item))
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _SECRET_VALUE.sub(r"\1\2***", value)
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _SKIPPED and not key.startswith("_"):
                entry[key] = redact(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", json_format: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
