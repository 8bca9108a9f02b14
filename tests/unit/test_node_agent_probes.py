"""The node agent's probe attempts against a real local HTTP server (no cluster)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from clm_sandbox.node.agent import run_probe


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        code = {"/ok": 200, "/redirect": 302, "/broken": 500}.get(self.path, 404)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
        assert self.headers["User-Agent"].startswith("kube-probe/")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def port() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def never_exec(command: list[str], timeout: float) -> tuple[int, bytes]:
    raise AssertionError("no exec probe expected")


def test_http_probes_succeed_on_2xx_and_3xx_only(port: int) -> None:
    container = {"ports": [{"name": "health", "containerPort": port}]}
    for path, expected in (("/ok", True), ("/redirect", True), ("/broken", False), ("/missing", False)):
        ok, detail = run_probe({"httpGet": {"path": path, "port": "health"}}, container, never_exec)
        assert ok is expected, (path, detail)
    ok, detail = run_probe({"httpGet": {"path": "/ok", "port": "nope"}}, container, never_exec)
    assert not ok and "not a declared container port" in detail


def test_tcp_probes_connect(port: int) -> None:
    assert run_probe({"tcpSocket": {"port": port}}, {}, never_exec)[0]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # bound, not listening: refused
        assert not run_probe({"tcpSocket": {"port": closed}, "timeoutSeconds": 1}, {}, never_exec)[0]


def test_exec_probes_use_the_exit_code() -> None:
    calls: list[list[str]] = []

    def fake_exec(command: list[str], timeout: float) -> tuple[int, bytes]:
        calls.append(command)
        return (0 if command[-1] == "yes" else 1), b"output"

    assert run_probe({"exec": {"command": ["check", "yes"]}}, {}, fake_exec) == (True, "output")
    assert run_probe({"exec": {"command": ["check", "no"]}}, {}, fake_exec) == (False, "output")
    assert calls == [["check", "yes"], ["check", "no"]]
