"""Console-script entry point: loads the command line with the garbage collector paused.

Importing SQLAlchemy, typer and rich creates hundreds of thousands of objects and no garbage;
collecting during the import, and again over all of them at exit, costs a short command like
`analyze` a third of its time. Freezing them keeps them out of every later collection.
"""

from __future__ import annotations

import gc


def main() -> None:
    """Run `sync_invoices`."""
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
