"""The operator's notion of "now", controllable in tests without sleeping.

Schedules, startup timeouts and history timestamps read the time only through ``now()``. When the
configuration names a clock file (``CLM_CLOCK_FILE``, parsed into OperatorConfig.clock_file and handed
here by runner.py through ``use_file``) holding an ISO-8601 UTC instant, that instant is "now" (the
sandbox tests move it forward to fire a cron schedule deterministically); otherwise the system clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

_clock_file: Path | None = None


def use_file(clock_file: Path | None) -> None:
    """Read "now" from ``clock_file`` from here on (None: the system clock)."""
    global _clock_file
    _clock_file = clock_file


def now() -> datetime:
    if _clock_file is not None:
        text = _clock_file.read_text().strip()
        if text:
            instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return instant if instant.tzinfo else instant.replace(tzinfo=UTC)
    return datetime.now(UTC)


def set_fake_now(clock_file: Path, instant: datetime) -> None:
    """Used by tests and the sandbox to move the controllable clock."""
    clock_file.write_text(instant.astimezone(UTC).isoformat())
