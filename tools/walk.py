"""The walk of one invoice through the code: `sync_invoices single <id>` traced from the command to the
HTTP call and back to its MIS status, counting the calls that cross from one of the product's modules
into another, how many of them climb back up a layer, and how often each module is entered.

    python tools/walk.py                 # this checkout
    python tools/walk.py --python /path/to/other/venv/bin/python   # another installation

It runs the CLI in a child process on a generated SQLite MIS and the local sandbox, with a profiler
hook that records (caller module, callee module) for every call between two sync_invoices modules.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import Lab  # noqa: E402

# Lower number = nearer the user. A call from a module to one with a smaller number climbs back up.
LAYERS = {"cli": 0, "entry": 0, "__main__": 0, "api": 0, "demo": 0, "service": 1, "engine": 2, "push": 2,
          "verify": 2, "reports": 2, "writes": 3, "recovery": 3, "ledger": 3, "customers": 3, "judge": 4,
          "mapping": 4, "mis": 4, "qbo": 4, "audit": 4, "lock": 4, "tokens": 5, "wire": 5, "redact": 5,
          "failpoints": 5, "settings": 5, "models": 6, "outcomes": 6, "errors": 6, "tables": 6, "throttle": 5}

LEAVES = (".models", ".errors", ".outcomes", ".settings", ".redact", ".wire", ".failpoints", ".tables", ".db")

TRACER = r'''
import json, sys, threading
OUT = sys.argv.pop(1)
calls = []
def module_of(frame):
    name = frame.f_globals.get("__name__") or ""
    return name if name.startswith("sync_invoices") else None
def hook(frame, event, arg):
    if event != "call":
        return
    callee = module_of(frame)
    caller = module_of(frame.f_back) if frame.f_back else None
    if callee and caller and callee != caller:
        calls.append((caller, callee, frame.f_code.co_name))
sys.setprofile(hook)
threading.setprofile(hook)
import atexit
atexit.register(lambda: open(OUT, "w").write(json.dumps(calls)))
import runpy
sys.argv = ["sync_invoices"] + sys.argv[1:]
runpy.run_module("sync_invoices", run_name="__main__")
'''


def layer(module: str) -> int:
    """The layer of a module (by its last meaningful name part)."""
    parts = module.split(".")[1:] or ["cli"]
    for part in reversed(parts):
        if part in LAYERS:
            return LAYERS[part]
    return LAYERS.get(parts[0], 4)


def walk(python: str) -> dict:
    """Trace `single` on one invoice; the crossings, the upward ones, and entries per module."""
    lab = Lab("sqlite", invoices=3, students=3, applicants=0, bad_rows=False,
              cli_python=None if python == sys.executable else python)
    try:
        out = Path(tempfile.mkdtemp()) / "calls.json"
        script = Path(tempfile.mkdtemp()) / "trace.py"
        script.write_text(TRACER)
        done = subprocess.run([python, str(script), str(out), "single", str(lab.generated.invoice_ids[0])],
                              env=lab.env, cwd=lab.workdir, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        calls = [tuple(c) for c in json.loads(out.read_text())]
    finally:
        lab.close()
    # Import-time calls (module bodies) are not the walk, nor are the leaves every module uses (values,
    # errors, settings, masking, JSON, the database connection itself): keep the steps, each call edge
    # (caller module -> callee module.function) once.
    steps = {(a, b, f) for a, b, f in calls if f != "<module>" and not b.endswith(LEAVES)}
    up = sorted(f"{a} -> {b}.{f}" for a, b, f in steps if layer(b) < layer(a))
    entered = Counter(b for _, b, _ in steps)
    return {"call_edges": len(steps), "modules": len({m for a, b, _ in steps for m in (a, b)}),
            "climbing_up": len(up), "entered": dict(entered.most_common(6)), "up": up}


def main() -> int:
    """Print the walk's figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=sys.executable, help="the Python of the installation to trace")
    args = parser.parse_args()
    figures = walk(args.python)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
