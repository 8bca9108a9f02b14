"""The operator's notion of "now", controllable in tests without sleeping.

Schedules, startup timeouts and history timestamps read the time only through ``now()``. When the
environment variable CLM_CLOCK_FILE names a file holding an ISO-8601 UTC instant, that instant is "now"
(the sandbox tests move it forward to fire a cron schedule deterministically); otherwise the system clock.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

CLOCK_FILE_ENV = "CLM_CLOCK_FILE"


def now() -> datetime:
    clock_file = os.environ.get(CLOCK_FILE_ENV)
    if clock_file:
        text = Path(clock_file).read_text().strip()
        if text:
            instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return instant if instant.tzinfo else instant.replace(tzinfo=UTC)
    return datetime.now(UTC)


def set_fake_now(clock_file: Path, instant: datetime) -> None:
    """Used by tests and the sandbox to move the controllable clock."""
    clock_file.write_text(instant.astimezone(UTC).isoformat())
