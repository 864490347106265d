"""The MIS server goes away mid-run and stays away (a crash, a network cut): the run ends promptly - its
wind-down neither hangs nor crashes on a database that is gone - with exit 2 and one line naming the MIS
(password hidden) and what to check; once the server is back, the next run settles what was in flight.
A throwaway mariadbd (tools/scratch_mariadb.py) plays the MIS server, so the shared one is untouched."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import select

from sync_invoices.demo_data import populate
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from tests.helpers import CLI, assert_exactly_once, random_realm, run_cli, sandbox_env

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]
PASSWORD = "Outage-pw-7731"


def _scratch() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "tools" / "scratch_mariadb.py"
    spec = importlib.util.spec_from_file_location("scratch_mariadb", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("scratch_mariadb", module)
    spec.loader.exec_module(module)
    return module


def test_the_mis_server_gone_for_good_mid_run_ends_the_run_promptly_with_one_line(make_sandbox, tmp_path) -> None:
    with _scratch().ScratchMariaDB() as server:
        root_url = server.create_database("mis")
        admin = server.connect()
        with admin.cursor() as cur:
            cur.execute(f"CREATE USER 'sync'@'%' IDENTIFIED BY '{PASSWORD}'")
            cur.execute("GRANT ALL ON mis.* TO 'sync'@'%'")
        admin.close()
        url = f"mysql+pymysql://sync:{PASSWORD}@127.0.0.1:{server.port}/mis"
        sandbox = make_sandbox(seed=3, realm_id=random_realm(), latency_ms=30, latency_per_batch_op_ms=20)
        items = [str(sandbox.create("Item", {"Name": f"Fee {n}", "Type": "Service"})["Id"]) for n in range(5)]
        mis = Mis.connect(root_url)
        try:
            mis.create_mis()
            populate(mis, invoices=300, students=100, applicants=4, item_ids=items, bad_rows=False)
            env = sandbox_env(sandbox, url, tmp_path, QBO_REQUEST_CAP_SECONDS="2", SYNC_SETTLE_MARGIN_SECONDS="1",
                              SYNC_RUN_LEASE_SECONDS="2", SYNC_STOP_GRACE_SECONDS="3", MIS_CONNECT_TIMEOUT_SECONDS="2")
            process = subprocess.Popen(CLI + ["all", "--batch-size", "20"], env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 60
            while len(sandbox.entities("Invoice")) < 20 and time.monotonic() < deadline:
                time.sleep(0.02)
            server.stop()
            gone = time.monotonic()
            out, err = process.communicate(timeout=120)
            ended_after = time.monotonic() - gone
            assert process.returncode == 2, out + err
            assert ended_after < 20, f"the run took {ended_after:.1f} s to end once the MIS was gone"
            assert "Traceback" not in out + err and PASSWORD not in out + err
            text = " ".join(err.split())
            assert text.startswith("error: ") and text.count("error: ") == 1, err
            assert f"mysql+pymysql://sync:***@127.0.0.1:{server.port}/mis" in text, err
            assert "Check that the database server is running" in text and "nothing is lost" in text, err
            server.start()
            time.sleep(3.5)  # QuickBooks' (shortened) cap on what may still be executing
            again = run_cli(env, "all", "--batch-size", "50")
            assert again.returncode == 0, again.stdout + again.stderr
            assert_exactly_once(mis, sandbox, list(range(1, 301)))
            with mis.read() as conn:
                first = conn.execute(select(t.runs).order_by(t.runs.c.id).limit(1)).one()
            assert first.state == "failed" and first.finished is not None  # recorded by the run that took over
        finally:
            mis.close()
