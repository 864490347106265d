"""Injected failures: the Faults plan and the one seeded RNG that decides them."""
from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any, MutableSequence

# Fault kinds as counted in stats()["faults_injected"], each with the Faults field holding its rate.
RATE_FIELDS: dict[str, str] = {
    "error_500": "error_500_rate",
    "html_503": "html_503_rate",
    "lost_response": "lost_response_rate",
    "token_death": "token_death_rate",
    "slow": "slow_rate",
    "slow_before_write": "slow_before_write_rate",
    "token_endpoint_500": "token_endpoint_500_rate",
    "truncated": "truncated_rate",
}


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often; every rate defaults to 0 (off)."""

    seed: int = 0
    error_500_rate: float = 0.0
    html_503_rate: float = 0.0
    lost_response_rate: float = 0.0
    throttle_rate: float = 0.0
    throttle_burst: int = 3
    throttle_xml_ratio: float = 0.5
    retry_after_seconds: float | None = None
    token_death_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 5.0
    slow_before_write_rate: float = 0.0
    token_endpoint_500_rate: float = 0.0
    # The answer's Content-Length promises more bytes than are sent, then the connection closes; what the
    # request did is done (a write is committed), the client reads a broken body.
    truncated_rate: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name.endswith("_rate") or f.name == "throttle_xml_ratio":
                value = getattr(self, f.name)
                if not 0.0 <= float(value) <= 1.0:
                    raise ValueError(f"{f.name} must be between 0 and 1, got {value!r}")
        if self.throttle_burst < 1:
            raise ValueError("throttle_burst must be at least 1")
        if self.slow_seconds < 0:
            raise ValueError("slow_seconds must not be negative")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        """Build from a JSON object (admin endpoint); unknown keys are an error, not ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return asdict(self)


class FaultPlan:
    """The live plan: decides, thread-safely and reproducibly, which requests fail."""

    def __init__(self, faults: Faults, base_seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._base_seed = base_seed
        self._faults = faults
        self._rng = random.Random(self._seed_for(faults))
        self._burst_left = 0

    def _seed_for(self, faults: Faults) -> int:
        # With SandboxConfig.seed left at 0 this is exactly random.Random(Faults.seed).
        return faults.seed + self._base_seed * 1_000_003

    @property
    def faults(self) -> Faults:
        """The plan in force."""
        return self._faults

    def replace(self, faults: Faults) -> None:
        """Swap in a new plan and reseed, so a run under a given plan is reproducible."""
        with self._lock:
            self._faults = faults
            self._rng = random.Random(self._seed_for(faults))
            self._burst_left = 0

    def roll(self, kind: str) -> bool:
        """True when the fault `kind` (a RATE_FIELDS key) strikes this time."""
        rate = getattr(self._faults, RATE_FIELDS[kind])
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def spurious_throttle(self) -> bool:
        """True when this request falls in an injected 429 burst (starting one, or inside one)."""
        with self._lock:
            if self._burst_left > 0:
                self._burst_left -= 1
                return True
            if self._faults.throttle_rate > 0 and self._rng.random() < self._faults.throttle_rate:
                self._burst_left = self._faults.throttle_burst - 1
                return True
            return False

    def throttle_as_xml(self) -> bool:
        """True when this 429 goes out as XML (QBO's habit despite Accept: application/json)."""
        ratio = self._faults.throttle_xml_ratio
        if ratio <= 0:
            return False
        if ratio >= 1:
            return True
        with self._lock:
            return self._rng.random() < ratio

    def shuffle(self, items: MutableSequence[Any]) -> None:
        """Shuffle batch responses in place: QBO does not keep request order (issue #143)."""
        with self._lock:
            self._rng.shuffle(items)
