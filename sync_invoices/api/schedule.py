"""`serve --push-every 15m --verify-every 24h`: timers in the same process, each tick one job of the
registry (so the lock, the audit and SIGTERM apply as to any other run). A tick that meets the company's
lock held by another run does nothing and waits for the next one; ticks never overlap."""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError, LockHeld, SyncError
from .answers import ApiError
from .context import pushed_by

if TYPE_CHECKING:
    from .context import ServeContext

log = logging.getLogger("sync_invoices.api.schedule")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)
MIN_SECONDS = 1.0


def parse_duration(text: str, option: str) -> float:
    """Seconds of a duration like 90s, 15m, 24h or 7d (ConfigError naming the option otherwise)."""
    found = _DURATION.match(text or "")
    seconds = float(found.group(1)) * UNITS[found.group(2).lower()] if found else 0.0
    if seconds < MIN_SECONDS:
        raise ConfigError(f"{option} {text!r} is not a duration of at least {MIN_SECONDS:g} s.",
                          fix=f"Write it like {option} 90s, 15m, 24h or 7d.")
    return seconds


class Timer(threading.Thread):
    """Calls `tick` every `interval` seconds (first one interval after start) until halted."""

    def __init__(self, name: str, interval: float, tick: Callable[[], None]) -> None:
        super().__init__(name=f"schedule-{name}", daemon=True)
        self.interval, self.tick = interval, tick
        self._halt = threading.Event()

    def run(self) -> None:
        # The next tick is counted from the end of the last one: a long push never piles ticks up.
        while not self._halt.wait(self.interval):
            try:
                self.tick()
            except Exception:  # a bug must not end the schedule; the log has it
                log.exception("scheduled %s failed", self.name)

    def halt(self) -> None:
        """No more ticks (a tick running now ends through the registry's stop)."""
        self._halt.set()


def push_tick(context: "ServeContext", batch_size: int) -> Callable[[], None]:
    """A scheduled `all`."""
    def tick() -> None:
        try:
            job = context.runs.push("all", batch_size=batch_size, pushed_by=pushed_by(context.settings, "schedule"))
            job.finished.wait()
            summary = job.outcome()
            log.info("scheduled push: run %s %s, %d synced, %d failed, %d left", summary.run_id, summary.state,
                     summary.synced, summary.failed, summary.remaining)
        except LockHeld as error:
            log.info("scheduled push skipped until the next tick: %s", error.message)
        except (SyncError, ApiError) as error:
            log.warning("scheduled push did not run: %s", error)
    return tick


def verify_tick(context: "ServeContext") -> Callable[[], None]:
    """A scheduled verify: it reports drift (for the dashboard), it never repairs on its own."""
    def tick() -> None:
        try:
            job = context.runs.verify(full=False, repair=False, void_deleted=False,
                                      pushed_by=pushed_by(context.settings, "schedule"))
            job.finished.wait()
            result = job.outcome()
            log.info("scheduled verify: %s checked, drift %s", result.get("checked"), result.get("counts"))
        except LockHeld as error:
            log.info("scheduled verify skipped until the next tick: %s", error.message)
        except (SyncError, ApiError) as error:
            log.warning("scheduled verify did not run: %s", error)
    return tick


def timers(context: "ServeContext", *, push_every: float | None, verify_every: float | None,
           batch_size: int) -> list[Timer]:
    """The timers asked for (not started)."""
    found = []
    if push_every:
        found.append(Timer("push", push_every, push_tick(context, batch_size)))
    if verify_every:
        found.append(Timer("verify", verify_every, verify_tick(context)))
    return found
