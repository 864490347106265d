"""The `verify` part of tools/benchmark.py: what keeping the books equal costs. Prints nothing itself.

1. verify --full on N synced invoices (10,000 by default) with the sandbox at QuickBooks' real limits
   and latency: QuickBooks reads (metered by Intuit; target: one query per 1,000 invoices plus a
   handful) and wall time, process start included.
2. verify (incremental) with nothing changed since: reads (target 1-2) and wall time; and after an
   accountant touched a few invoices (found through change data capture, in the same reads).
3. edit detection (mis/edits.py) on a MariaDB MIS of M synced rows (1,000,000 by default) with a
   sent baseline each: `count_edited` wall time, best and median, with a few hundred edits scattered
   over the table, and with edits everywhere (every block of ids differs: the plain join); the plain
   join alone for comparison. Target: at most 1 s.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from typing import Callable

from sqlalchemy import func, select, text

from lab import Lab, scratch_mis
from sync_invoices.mis import Mis
from sync_invoices.mis.edits import count_edited, edited_query

UNLIMITED_CLIENT = {"QBO_REQUESTS_PER_MINUTE": str(10**8), "QBO_BATCH_REQUESTS_PER_MINUTE": str(10**7),
                    "QBO_REQUESTS_PER_SECOND": str(10**7)}


def _timed_cli(lab: Lab, *args: str) -> tuple[float, dict, int]:
    """Run the CLI; wall seconds, its JSON document, and the QuickBooks reads the sandbox counted."""
    lab.sandbox.reset_stats()
    started = time.monotonic()
    result = subprocess.run(lab.command(*args, "--json"), env=lab.env, capture_output=True, text=True,
                            timeout=3600, cwd=lab.workdir)
    elapsed = time.monotonic() - started
    if result.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return elapsed, json.loads(result.stdout), lab.sandbox.stats()["reads"]


def verify_figures(invoices: int, real_limits: dict, client_env: dict[str, str], unlimited: dict,
                   window_seconds: float = 60.0) -> dict:
    """Parts 1 and 2: push `invoices` with the limits off, then verify at QuickBooks' real limits."""
    lab = Lab("mariadb", invoices=invoices, students=max(invoices // 5, 1), applicants=0, bad_rows=False,
              config={**unlimited, "latency_ms": 0.0})
    try:
        lab.env.update(UNLIMITED_CLIENT)
        pushed = lab.run("all", "--json")
        if pushed.returncode != 0:
            raise SystemExit(f"the push failed: {pushed.stderr[-2000:]}")
        # The verify comes a few minutes after the push, as it does at a school: a read of what changed
        # looks back from the last one a little, and must not find the push's own invoices there.
        lab.sandbox.advance_clock(300)
        lab.sandbox.set_limits(**real_limits)
        time.sleep(window_seconds)  # the push's requests leave the company's rate windows: reads alone are measured
        for name in UNLIMITED_CLIENT:
            lab.env.pop(name, None)
        lab.env.update(client_env)
        full_s, full, full_reads = _timed_cli(lab, "verify", "--full")
        same_s, same, same_reads = _timed_cli(lab, "verify")
        touched = [inv["Id"] for inv in lab.sandbox.entities("Invoice")[:10]]
        for n, qbo_id in enumerate(touched):
            lab.sandbox.accountant_edit_invoice(qbo_id, private_note=f"checked by the accountant ({n})")
        changed_s, changed, changed_reads = _timed_cli(lab, "verify")
        return {"invoices": invoices,
                "full": {"seconds": round(full_s, 1), "reads": full_reads, "reported_reads": full["reads"],
                         "checked": full["checked"], "mode": full["mode"], "drift": len(full["drift"])},
                "nothing_changed": {"seconds": round(same_s, 1), "reads": same_reads, "mode": same["mode"],
                                    "drift": len(same["drift"])},
                "ten_changed": {"seconds": round(changed_s, 1), "reads": changed_reads, "mode": changed["mode"],
                                "found": changed["counts"].get("changed_in_qbo", 0)}}
    finally:
        lab.close()


def build_synced_mis(mis: Mis, rows: int) -> None:
    """`rows` synced invoices, each with its sent baseline, as the push leaves them (set-based SQL)."""
    students = max(rows // 50, 1)
    with mis.write() as conn:
        conn.execute(text("INSERT INTO tbl_income_category (id, name, QuickBk_ctgId) VALUES (1, 'Tuition Fee', 1), "
                          "(2, 'Registration Fee', 2), (3, 'Library Fee', 3)"))
        conn.execute(text(
            "INSERT INTO tbl_imvoice (reg_no, fee_category, dept, invoice_date, comment, QuickBk_Status, "
            "quickbooks_id, sync_token, user) "
            f"SELECT CONCAT('EAUR/', 2000 + (seq % {students} + 1) % 25, '/', LPAD(seq % {students} + 1, 6, '0')), "
            "1 + seq % 3, 1000 + (seq % 97) * 0.5 + 0.1, DATE_ADD('2015-01-01', INTERVAL seq % 4000 DAY), "
            "IF(seq % 5 = 0, NULL, CONCAT('Semester ', seq % 2 + 1, ' fees, réglés')), 1, seq, '0', 'bursar' "
            f"FROM seq_1_to_{rows}"))
    record_baselines(mis)


def record_baselines(mis: Mis) -> None:
    """A sent baseline for every synced row, equal to its MIS values, as the push leaves them."""
    with mis.write() as conn:
        conn.execute(text(
            "INSERT INTO qb_invoice_sent (invoice_id, qbo_id, sync_token, customer_id, amount, item_id, txn_date, "
            "description, private_note, mis_reg_no, mis_fee_category, mis_dept, mis_invoice_date, mis_comment, "
            "sent_at) SELECT id, COALESCE(quickbooks_id, id), '0', '1', ROUND(dept, 2), fee_category, "
            "DATE_FORMAT(invoice_date, '%Y-%m-%d'), 'Tuition Fee', comment, reg_no, fee_category, dept, invoice_date, "
            "comment, NOW(6) FROM tbl_imvoice WHERE QuickBk_Status = 1"))
        conn.execute(text("ANALYZE TABLE tbl_imvoice, qb_invoice_sent"))


def _walls(job: Callable[[], int], repeats: int) -> tuple[int, list[float]]:
    job()  # one warm-up: the figures are of a server that has seen the tables before
    times, found = [], 0
    for _ in range(repeats):
        started = time.monotonic()
        found = job()
        times.append(time.monotonic() - started)
    return found, times


def _figures(found: int, times: list[float]) -> dict:
    return {"edited": found, "best": round(min(times), 3), "median": round(statistics.median(times), 3)}


def edit_detection_figures(rows: int, repeats: int, scattered: int = 200) -> dict:
    """Part 3: edit detection on `rows` synced MIS rows (MariaDB)."""
    url, drop = scratch_mis("mariadb")
    mis = Mis.connect(url, pool_size=6)
    try:
        mis.create_mis()
        mis.ensure_tables()
        started = time.monotonic()
        build_synced_mis(mis, rows)
        built = time.monotonic() - started
        step = max(rows // scattered, 1)
        with mis.write() as conn:  # a busy day: a few hundred fees corrected, here and there
            conn.execute(text(f"UPDATE tbl_imvoice SET dept = dept + 100 WHERE id % {step} = 17"))

        def plain() -> int:
            with mis.read() as conn:
                return int(conn.scalar(select(func.count()).select_from(edited_query(mis).subquery())) or 0)
        figures = {"rows": rows, "build_seconds": round(built, 1),
                   "scattered": _figures(*_walls(lambda: count_edited(mis), repeats)),
                   "plain_join": _figures(*_walls(plain, repeats))}
        with mis.write() as conn:  # a mass correction: every block of ids has an edit
            conn.execute(text("UPDATE tbl_imvoice SET comment = CONCAT(IFNULL(comment, ''), '.') WHERE id % 97 = 5"))
        figures["everywhere"] = _figures(*_walls(lambda: count_edited(mis), repeats))
        with mis.read() as conn:
            figures["buffer_pool_mib"] = int(conn.execute(text("SELECT @@innodb_buffer_pool_size")).scalar()) >> 20
            figures["tables_mib"] = {name: int(size) >> 20 for name, size in conn.execute(text(
                "SELECT table_name, data_length + index_length FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name IN ('tbl_imvoice', 'qb_invoice_sent')"))}
        return figures
    finally:
        mis.close()
        drop()


def print_figures(verify: dict | None, edits: dict | None) -> None:
    """The part's lines of the benchmark's output."""
    if verify:
        full, same, ten = verify["full"], verify["nothing_changed"], verify["ten_changed"]
        pages = -(-verify["invoices"] // 1000)
        print(f"verify --full: {full['checked']:,} invoices read back in {full['seconds']} s with {full['reads']} "
              f"QuickBooks reads ({pages} pages of 1,000 + {full['reads'] - pages}); drift {full['drift']}")
        print(f"verify, nothing changed: {same['mode']}, {same['reads']} reads, {same['seconds']} s; "
              f"after 10 accountant edits: {ten['mode']}, {ten['reads']} reads, {ten['seconds']} s, "
              f"{ten['found']} found")
    if edits:
        print(f"edit detection on {edits['rows']:,} synced rows (MariaDB, buffer pool {edits['buffer_pool_mib']} MiB, "
              f"tables {edits['tables_mib']} MiB): {edits['scattered']['edited']} scattered edits in "
              f"{edits['scattered']['best']} s best / {edits['scattered']['median']} s median "
              f"(the plain join: {edits['plain_join']['best']} s / {edits['plain_join']['median']} s); "
              f"{edits['everywhere']['edited']} edits in every block: {edits['everywhere']['best']} s / "
              f"{edits['everywhere']['median']} s")
