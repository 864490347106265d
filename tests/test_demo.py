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
        for step in ("sync_invoices analyze", "sync_invoices preview", "sync_invoices all", "sync_invoices status",
                     "Both books move", "sync_invoices verify", "sync_invoices verify --repair"):
            assert step in out
        found, repaired = out.split("─ sync_invoices verify --repair ─")  # the steps' rules
        found = found.split("─ sync_invoices verify ─")[-1]
        assert "3 drift(s) remain" in found and "0 repaired" in found
        for kind in ("missing_in_qbo", "changed_in_mis", "changed_in_qbo"):
            assert kind in found and kind in repaired
        assert "The books agree" in repaired and "3 repaired" in repaired
        for action in ("recreated", "updated"):
            assert action in repaired
        assert "300 synced" in out and f"{len(BAD_ROWS)} failed" in out
        assert "Traceback" not in out + result.stderr
        mis = Mis.connect(f"sqlite:///{tmp_path / 'demo' / 'mis.sqlite'}")
        with mis.read() as conn:
            synced = conn.scalar(select(func.count()).select_from(t.invoice).where(t.invoice.c.QuickBk_Status == 1))
            failed = conn.scalar(select(func.count()).select_from(t.invoice).where(t.invoice.c.QuickBk_Status == 2))
            verified = conn.execute(select(t.verifies.c.exit_code).order_by(t.verifies.c.id)).scalars().all()
        mis.close()
        assert (synced, failed) == (300, len(BAD_ROWS))
        assert verified == [1, 0], "drift found, then repaired: the books agree"
        assert list((tmp_path / "demo" / "logs").glob("audit-*.jsonl"))
