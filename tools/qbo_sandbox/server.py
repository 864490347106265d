"""HTTP plumbing: a keep-alive ThreadingHTTPServer that hands parsed requests to the routes."""
from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from . import errors
from .wire import Request, Response

log = logging.getLogger("qbo_sandbox")
# Idle keep-alive connections are closed after this long (QBO's own request cap is 120 s).
IDLE_TIMEOUT_SECONDS = 120.0


class SandboxHTTPServer(ThreadingHTTPServer):
    """Threaded server that remembers its connections so stop() can cut keep-alive sockets too."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 makes bursts of new connections wait for SYN retries (~1 s).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], dispatch: Callable[[Request], Response],
                 verbose: bool = False) -> None:
        self.dispatch = dispatch
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, SandboxRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Track the connection, then serve it in a thread."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection, then close it."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open client connection (handler threads then finish on their own)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log real bugs; stay quiet about clients that went away."""
        # A client that vanished mid-request (killed process, timeout) is normal here, not an error.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        log.exception("sandbox: unhandled error serving %s", client_address)


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """Reads the whole request, lets the routes decide, writes one response (or drops the line)."""

    protocol_version = "HTTP/1.1"
    server_version = "QBOSandbox/1.0"
    # Headers and body go out in one segment anyway; NODELAY avoids 40 ms Nagle/delayed-ACK stalls.
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_SECONDS
    server: SandboxHTTPServer

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        """Serve a GET."""
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        """Serve a POST."""
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        """Serve a DELETE (only to answer it properly)."""
        self._serve("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        """Serve a PUT (only to answer it properly)."""
        self._serve("PUT")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self, method: str) -> None:
        arrived = time.monotonic()
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        request = Request(method, unquote(parts.path), query, self.headers, body, self.client_address[0], arrived)
        try:
            # Processing runs to its end (or QBO's request cap) even if the client has already gone away:
            # nothing here watches the socket, as QBO does not promise to stop work it has started.
            response = self.server.dispatch(request)
        except Exception:  # noqa: BLE001 - a bug in a route must not kill the connection thread
            log.exception("sandbox: route failed for %s %s", method, self.path)
            response = Response.fault(errors.system_fault())
        if response.drop_connection:
            # A lost response: the work is committed, the client gets not a single byte.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._write(response)

    def _write(self, response: Response) -> None:
        body = response.body
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            # A truncated answer promises the whole body (at least one byte) and sends half of it.
            self.send_header("Content-Length", str(max(len(body), 1) if response.truncated else len(body)))
            self.send_header("intuit_tid", f"sandbox-{threading.get_ident():x}-{id(response):x}")
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body[:len(body) // 2] if response.truncated else body)
            if response.truncated:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
        except (ConnectionError, OSError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from http.server
        """Quiet unless the sandbox is verbose."""
        if self.server.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))
