"""A real S3-compatible server (moto's server mode) in a child process, for the sandbox and the tests.

Only the standard library is imported here: the sandbox starts it without kopf, the test fixture
without the trainer stack. The server speaks S3 over HTTP on 127.0.0.1 and accepts any credentials.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from types import TracebackType

from clm_sandbox.controlplane import free_port

_READY_TIMEOUT_S = 60.0


class S3ServerError(RuntimeError):
    """The S3 server process did not come up."""


class S3Server:
    """A running moto server; ``endpoint_url`` is what boto3 and the trainer point at."""

    def __init__(self, process: subprocess.Popen[bytes], host: str, port: int, log_path: str) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.endpoint_url = f"http://{host}:{port}"
        self.log_path = log_path
        atexit.register(self.stop)  # never leave an orphan server behind a crashed test session

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Terminate the server (idempotent). Everything it stored is gone afterwards."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        atexit.unregister(self.stop)
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"S3Server(endpoint_url={self.endpoint_url!r}, pid={self.process.pid})"


def _ready(endpoint_url: str) -> bool:
    # moto answers ListBuckets on "/" once its WSGI app is serving; any HTTP answer means it is up.
    try:
        with urllib.request.urlopen(endpoint_url + "/", timeout=2) as response:
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def start_s3_server(host: str = "127.0.0.1", port: int = 0) -> S3Server:
    """Start ``python -m moto.server`` and wait until it answers. ``port=0`` picks a free port."""
    attempts = 3 if port == 0 else 1
    last_error = ""
    for _ in range(attempts):
        chosen = port or free_port(host)
        log = tempfile.NamedTemporaryFile(prefix="clm-s3server-", suffix=".log", delete=False)
        env = dict(os.environ)
        # Dummy credentials for moto itself; nothing real is ever needed or used.
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", host, "-p", str(chosen)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
        log.close()
        server = S3Server(process, host, chosen, log.name)
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline and server.running:
            if _ready(server.endpoint_url):
                return server
            time.sleep(0.1)
        last_error = _tail(log.name)
        server.stop()  # a port taken between free_port() and bind lands here; try another
    raise S3ServerError(f"moto S3 server did not start on {host}: {last_error or 'no output'}")


def _tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read()[-limit:].decode(errors="replace")
    except OSError:
        return ""
