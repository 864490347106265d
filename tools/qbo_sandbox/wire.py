"""Request and Response as the routes see them, independent of http.server."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from .errors import QBOFault
from .jsonio import dump_bytes

JSON_TYPE = "application/json;charset=UTF-8"
HTML_TYPE = "text/html;charset=UTF-8"
XML_TYPE = "application/xml"


@dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    client_host: str = "127.0.0.1"
    # When the request line came in (time.monotonic()): QBO's 120 s cap counts from here.
    arrived: float = field(default_factory=time.monotonic)

    def header(self, name: str, default: str = "") -> str:
        """A header value, case-insensitively."""
        value = self.headers.get(name)
        return default if value is None else value


@dataclass
class Response:
    """One HTTP response; `drop_connection` closes the socket without sending a byte; `truncated` sends the
    headers (Content-Length of the whole body) and half the body, then closes the socket."""

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    drop_connection: bool = False
    truncated: bool = False

    @classmethod
    def json(cls, status: int, document: Any, headers: dict[str, str] | None = None) -> Response:
        """A JSON response with exact decimals."""
        return cls(status, dump_bytes(document), JSON_TYPE, dict(headers or {}))

    @classmethod
    def fault(cls, fault: QBOFault) -> Response:
        """A QBO Fault document with the fault's HTTP status."""
        return cls.json(fault.status, fault.body())

    @classmethod
    def text(cls, status: int, text: str, content_type: str = HTML_TYPE,
             headers: dict[str, str] | None = None) -> Response:
        """A non-JSON response (HTML pages, XML throttle bodies)."""
        return cls(status, text.encode("utf-8"), content_type, dict(headers or {}))

    @classmethod
    def dropped(cls) -> Response:
        """No response at all: the connection is closed (a lost response)."""
        return cls(0, drop_connection=True)
