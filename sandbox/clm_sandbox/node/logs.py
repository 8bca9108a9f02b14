"""The kubelet's log endpoint, so that ``kubectl logs`` works: the API server proxies
``GET /api/v1/namespaces/NS/pods/POD/log`` to
``https://<node InternalIP>:<kubeletEndpoint port>/containerLogs/NS/POD/CONTAINER``
(``follow``, ``previous``, ``tailLines``, ``limitBytes``).

TLS with a serving certificate of its own (the API server does not verify kubelets without
``--kubelet-certificate-authority``); clients must present a certificate of the cluster's CA (the API
server's ``--kubelet-client-certificate``). The logs are plain text, so ``timestamps`` and
``sinceSeconds``/``sinceTime`` are not honoured: the whole selected range is returned.
"""

from __future__ import annotations

import logging
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from clm_sandbox.certs import CertificateAuthority

log = logging.getLogger("clm_sandbox.nodeagent")

# (namespace, pod, container, previous) -> (log file, start offset, end offset or None, still running?)
LogLocator = Callable[[str, str, str, bool], "tuple[Path, int, int | None, Callable[[], bool]] | None"]


def tail_lines(data: bytes, lines: int) -> bytes:
    """The last ``lines`` lines of ``data`` (a final line without newline counts as a line)."""
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


class LogServer:
    def __init__(self, locate: LogLocator, client_ca_pem: bytes | None, host: str = "127.0.0.1") -> None:
        self.locate = locate
        authority = CertificateAuthority("clm-node-agent")
        serving = authority.issue("clm-node-agent", ip_addresses=(host,), server=True)
        self._dir = tempfile.TemporaryDirectory(prefix="clm-node-tls-")
        cert, key = serving.write(Path(self._dir.name), "serving")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        if client_ca_pem:
            context.load_verify_locations(cadata=client_ca_pem.decode())
            context.verify_mode = ssl.CERT_REQUIRED
        server = ThreadingHTTPServer((host, 0), self._handler())
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.server = server
        self.port: int = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name="kubelet-logs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._dir.cleanup()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        locate = self.locate

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
                log.debug("kubelet logs: " + format, *args)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urlparse(self.path)
                if url.path == "/healthz":
                    self._reply(200, b"ok")
                    return
                parts = [unquote(p) for p in url.path.split("/") if p]
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self._reply(404, b"the node agent serves only /containerLogs/<ns>/<pod>/<container>")
                    return
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                previous = query.get("previous") == "true"
                found = locate(parts[1], parts[2], parts[3], previous)
                if found is None:
                    which = "previous terminated container" if previous else "container"
                    self._reply(404, f'{which} "{parts[3]}" in pod "{parts[2]}" not found'.encode())
                    return
                path, start, end, running = found
                full = _read(path, start, end)
                data = tail_lines(full, int(query["tailLines"])) if "tailLines" in query else full
                limit = int(query["limitBytes"]) if "limitBytes" in query else None
                if limit is not None:
                    data = data[:limit]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                follow = query.get("follow") == "true" and end is None
                if not follow:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if not follow:
                    return
                position = start + len(full)
                sent = len(data)
                try:
                    while True:
                        chunk = _read(path, position, None)
                        if chunk:
                            if limit is not None:
                                chunk = chunk[: max(0, limit - sent)]
                            self.wfile.write(chunk)
                            self.wfile.flush()
                            position += len(chunk)
                            sent += len(chunk)
                        elif not running() or (limit is not None and sent >= limit):
                            return
                        else:
                            time.sleep(0.2)
                except (BrokenPipeError, ConnectionResetError):
                    return

            def _reply(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _read(path: Path, start: int, end: int | None) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            return handle.read() if end is None else handle.read(max(0, end - start))
    except FileNotFoundError:
        return b""
