"""Structured, logfmt-style progress logs: one line per step with its duration.

``with step("load_data") as fields: ...; fields["rows"] = n`` logs
``step=load_data duration_s=0.42 rows=36062`` when the block ends. Values are quoted when they contain
spaces. Credentials never reach a log: nothing here logs the environment, and the S3 settings carry
no keys (they come from the standard AWS chain).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

LOGGER_NAME = "clm_trainer"
log = logging.getLogger(LOGGER_NAME)


def configure(level: int = logging.INFO) -> None:
    """Log lines to stderr (the container log); idempotent so in-process callers may call it repeatedly."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, "_clm", False):
            logger.removeHandler(handler)
    # Resolve sys.stderr at call time so captured/redirected stderr (tests, the CLI) is honoured.
    handler = logging.StreamHandler(sys.stderr)
    handler._clm = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s level=%(levelname)s %(message)s",
                                           datefmt="%Y-%m-%dT%H:%M:%S%z"))
    logger.addHandler(handler)


def fmt_value(value: object) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    if not text or any(c in text for c in ' "='):
        return '"' + text.replace('"', '\\"') + '"'
    return text


def kv(**fields: object) -> str:
    return " ".join(f"{k}={fmt_value(v)}" for k, v in fields.items())


def event(name: str, **fields: object) -> None:
    log.info("%s", kv(event=name, **fields))


@contextmanager
def step(name: str, durations: dict[str, float] | None = None,
         **fields: object) -> Iterator[dict[str, object]]:
    """Time a step; the yielded dict collects extra fields for its log line."""
    extra: dict[str, object] = dict(fields)
    started = time.perf_counter()
    try:
        yield extra
    except BaseException as exc:
        extra["status"] = "failed"
        extra["error"] = type(exc).__name__
        raise
    finally:
        elapsed = time.perf_counter() - started
        if durations is not None:
            durations[name] = round(elapsed, 4)
        log.info("%s", kv(step=name, duration_s=round(elapsed, 3), **extra))
