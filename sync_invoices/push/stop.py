"""A request to stop a run gracefully: set by a signal handler (SIGTERM, SIGINT) or by `serve`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class StopRequest:
    """Asks a run to stop: no new claims, nothing new sent, what is in flight applied."""

    event: threading.Event = field(default_factory=threading.Event)
    signal_name: str = ""
    exit_code: int = 0

    def request(self, signal_name: str, exit_code: int) -> None:
        """Ask the run to stop; the first request wins."""
        if not self.event.is_set():
            self.signal_name, self.exit_code = signal_name, exit_code
            self.event.set()

    @property
    def requested(self) -> bool:
        """True once a stop was asked for."""
        return self.event.is_set()
