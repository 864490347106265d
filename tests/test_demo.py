"""`sync_invoices demo`: the whole job on its embedded default, visibly, twice in a row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from sync_invoices.mis import tables as t
from sync_invoices.demo_data import BAD_ROWS
from sync_invoices.mis import Mis


def run_demo(workdir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QBO_", "SYNC_", "MIS_"))}
    env["COLUMNS"] = "120"
    return subprocess.run([sys.executable, "-m", "sync_invoices", "demo", "--workdir", str(workdir)],
                          env=env, capture_output=True, text=True, timeout=180)


def test_demo_runs_every_step_and_can_run_again(tmp_path: Path) -> None:
    for _ in range(2):
        result = run_demo(tmp_path / "demo")
        assert result.returncode == 0, result.stderr
        out = result.stdout
        for step in ("sync_invoices analyze", "sync_invoices preview", "sync_invoices all", "sync_invoices status"):
            assert step in out
        assert "300 synced" in out and f"{len(BAD_ROWS)} failed" in out
        assert "Traceback" not in out + result.stderr
        mis = Mis.connect(f"sqlite:///{tmp_path / 'demo' / 'mis.sqlite'}")
        with mis.read() as conn:
            synced = conn.scalar(select(func.count()).select_from(t.invoice).where(t.invoice.c.QuickBk_Status == 1))
            failed = conn.scalar(select(func.count()).select_from(t.invoice).where(t.invoice.c.QuickBk_Status == 2))
        mis.close()
        assert (synced, failed) == (300, len(BAD_ROWS))
        assert list((tmp_path / "demo" / "logs").glob("audit-*.jsonl"))
