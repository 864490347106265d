"""Console-script entry point: loads the command line with the garbage collector paused.

Importing SQLAlchemy, typer and rich creates hundreds of thousands of objects and no garbage;
collecting during the import, and again over all of them at exit, costs a short command like
`analyze` a third of its time. Freezing them keeps them out of every later collection.
"""

from __future__ import annotations

import gc
import os


def main() -> None:
    """Run `sync_invoices`."""
    try:
        gc.disable()
        try:
            from .cli import main as run
        finally:
            gc.enable()
            gc.freeze()
        try:
            run()
        finally:
            gc.freeze()
    except KeyboardInterrupt:
        # Ctrl-C while the program starts (or after a command has ended): no run had begun, nothing is half
        # done. A run in progress handles Ctrl-C itself (a graceful stop), so this is never one.
        os.write(2, b"\nerror: Interrupted before any work began.\n")
        raise SystemExit(130) from None
