"""`sync_invoices serve`: uvicorn on a socket of our own (a taken port is a one-line error), logs through
the redacting filter, and SIGTERM / SIGINT stopping the runs gracefully before uvicorn winds down."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from types import FrameType
from typing import Callable

import uvicorn

from ..errors import ConfigError
from ..redact import install_log_filter
from ..settings import Settings, is_loopback
from .app import create_app
from .runs import STOP_WAIT_MARGIN_SECONDS, RunRegistry

log = logging.getLogger("sync_invoices.api")
MIN_TOKEN_LENGTH = 16


def check_token(settings: Settings) -> None:
    """serve refuses to start without a token, or with one short enough to guess."""
    fix = ("Set SYNC_API_TOKEN to a long random value, e.g. the output of "
           "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`.")
    if not settings.api_token:
        raise ConfigError("SYNC_API_TOKEN is not set: serve refuses to start without an API token.", fix=fix)
    if len(settings.api_token.reveal()) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"SYNC_API_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters.", fix=fix)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (ConfigError when the address cannot be used)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
                          fix="Choose another --port / SYNC_API_PORT, or stop what uses it.") from None
    sock.set_inheritable(True)
    return sock


def _log_to_stderr() -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_sync_invoices_stderr", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        handler._sync_invoices_stderr = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    install_log_filter(root)  # access lines carry no header, but nothing secret must pass in any case


class _Server(uvicorn.Server):
    """uvicorn, telling the runs to stop as soon as a signal arrives."""

    def __init__(self, config: uvicorn.Config, runs: RunRegistry) -> None:
        super().__init__(config)
        self.runs = runs

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Before uvicorn waits for open requests: a batch request waits on its run, which must stop first.
        # From a thread: a signal handler must not wait for a lock the interrupted code may hold.
        name = signal.Signals(sig).name
        threading.Thread(target=self.runs.stop_all, args=(name, 128 + sig), daemon=True).start()
        super().handle_exit(sig, frame)


def serve(settings: Settings, *, host: str, port: int, push_every: float | None = None,
          verify_every: float | None = None, batch_size: int = 300, say: Callable[[str], None] = print) -> int:
    """Run the API and the dashboard until SIGTERM / SIGINT; returns the exit code."""
    check_token(settings)
    _log_to_stderr()
    app = create_app(settings, push_every=push_every, verify_every=verify_every, schedule_batch_size=batch_size)
    sock = listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(app, log_config=None, access_log=True, server_header=False, lifespan="on",
                            timeout_graceful_shutdown=int(settings.stop_grace_seconds + STOP_WAIT_MARGIN_SECONDS))
    server = _Server(config, app.state.context.runs)
    say(f"sync_invoices serve: dashboard at http://{shown}:{port}/ , API at http://{shown}:{port}/api/v1 "
        f"(docs at /docs). SIGTERM or Ctrl-C stops it gracefully.")
    if not is_loopback(host):
        say(f"warning: listening on {host}, not loopback: the token travels in clear unless a TLS proxy is in front.")
    for what, every in (("push all", push_every), ("verify", verify_every)):
        if every:
            say(f"schedule: {what} every {every:g} s (the first one {every:g} s from now).")
    log.info("serve listening on %s:%s", host, port)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down gracefully
        say("serve stopped.")
        return 130
    return 0 if server.started else 2
