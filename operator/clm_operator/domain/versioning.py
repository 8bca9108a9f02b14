"""Version names: sortable, deterministic, DNS-safe, derived only from the TrainingJob.

A repeated reconcile (or an operator restarted at any point) must never mint a second version for one
run, so the version depends on nothing but the TrainingJob's creation time and uid.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

_LABEL_VALUE_MAX = 63
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def parse_timestamp(value: datetime | str) -> datetime:
    """An RFC 3339 timestamp (as the API server writes it) or a datetime, as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 with second precision and a Z, the form metav1.Time uses."""
    return parse_timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def short_hash(text: str, length: int = 5) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def version_for_training_job(creation_timestamp: datetime | str, uid: str) -> str:
    """``vYYYYMMDD-HHMMSS-xxxxx``: sorts by creation time; the uid hash separates runs of one second."""
    if not uid:
        raise ValueError("metadata.uid is empty: the version is derived from the TrainingJob's uid")
    instant = parse_timestamp(creation_timestamp)
    return f"v{instant:%Y%m%d-%H%M%S}-{short_hash(uid)}"


def model_version_name(model_name: str, version: str) -> str:
    """The ModelVersion's metadata.name: ``<modelName>-<version>``."""
    return f"{model_name}-{version}"


def label_value(text: str) -> str:
    """``text`` if it is a valid label value, else a deterministic valid shortening of it."""
    if len(text) <= _LABEL_VALUE_MAX and _LABEL_VALUE_RE.match(text):
        return text
    cleaned = re.sub(r"[^-A-Za-z0-9_.]", "-", text)[: _LABEL_VALUE_MAX - 11].strip("-_.")
    return f"{cleaned}-{short_hash(text, 10)}" if cleaned else short_hash(text, 10)


def job_name_for(training_job_name: str) -> str:
    """The batch Job's name: at most 63 characters (it becomes the pods' ``job-name`` label)."""
    name = f"{training_job_name}-train"
    if len(name) <= _LABEL_VALUE_MAX:
        return name
    return f"{training_job_name[:46].rstrip('-.')}-train-{short_hash(training_job_name, 10)}"
