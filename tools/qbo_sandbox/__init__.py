"""A local QuickBooks Online sandbox: OAuth + accounting API over loopback HTTP, standard library only."""
from __future__ import annotations

from .config import SandboxConfig
from .errors import QBOFault
from .faults import Faults
from .sandbox import Sandbox

__all__ = ["Faults", "QBOFault", "Sandbox", "SandboxConfig"]
