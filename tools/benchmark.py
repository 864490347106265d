"""Throughput of sync_invoices at QuickBooks' true ceiling, against the local sandbox; the tool's own
speed with the limits off; and `analyze` on a million-row MariaDB MIS. Prints figures; asserts nothing.

1. push: a MariaDB MIS of N invoices for M new customers (4,500 and 1,500 by default), the sandbox
   enforcing QuickBooks' limits (500 requests/min, 40 batch requests/min, 10 requests/s, 10 in flight)
   with realistic latency (120 ms a request, plus 4 ms a batch operation); `sync_invoices all` as a user
   runs it, on its defaults and with --batch-size 1 and 1000. The true ceiling moves 40 x 30 + 460 =
   1,660 operations a minute (every batch full, the rest of the budget spent on single writes); the
   ratio is the time the ceiling needs for the workload's operations over the time taken.
2. known customers: N more invoices for the same customers: reads per invoice.
3. plain loop: one invoice at a time with python-quickbooks, as integrations commonly do (look
   the customer up, create it if missing, save the invoice), on the same sandbox, on a sample.
4. analyze: `sync_invoices analyze --json` wall time (process start included) on 1,000,000 rows
   (20,000 students, some reg_nos held twice, applicants, a few hundred bad rows of every kind), on a
   first migration (70% not synced) and a steady state (5%), each without and with the index
   `sync_invoices create-index` offers; best and median of --analyze-repeats runs after one warm-up.
5. raw: the limits and latency off, backlogs of 10,000 and 100,000 invoices: invoices a second and
   peak memory (which must not grow with the backlog).
6. verify (tools/bench_verify.py): reads and wall time of `verify --full` on 10,000 synced invoices at
   QuickBooks' real limits and of an incremental verify with nothing changed; edit detection on
   1,000,000 synced MariaDB rows.

    python tools/benchmark.py                       # real limits: about 20 minutes
    python tools/benchmark.py --scale 0.1 --batch-sizes default --plain-sample 60 --analyze-rows 200000 \
        --raw-invoices 20000                        # a quick look

--scale shrinks the rate windows (60 s x scale, and 10/scale requests a second) on both sides.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import requests
from sqlalchemy import select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import Lab, scratch_mis  # noqa: E402

from intuitlib.client import AuthClient  # noqa: E402
from quickbooks.client import QuickBooks  # noqa: E402
from quickbooks.objects.base import Ref  # noqa: E402
from quickbooks.objects.customer import Customer  # noqa: E402
from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail  # noqa: E402
from quickbooks.objects.invoice import Invoice  # noqa: E402
from sync_invoices.mis import tables as t  # noqa: E402
from sync_invoices.mis import Mis  # noqa: E402

OPERATIONS = 30
LIMITS = {"requests_per_minute": 500, "batch_requests_per_minute": 40, "max_concurrency": 10,
          "requests_per_second": 10}
# QuickBooks' true ceiling for one company: every batch full, and the rest of the minute's requests
# spent on single-operation writes (SPEC s.8).
CEILING_PER_MINUTE = 40 * OPERATIONS + (500 - 40)
UNLIMITED = {"requests_per_minute": 10**9, "batch_requests_per_minute": 10**9, "max_concurrency": 1000,
             "requests_per_second": 10**9}


def limits_config(scale: float, latency_ms: float, op_latency_ms: float) -> dict:
    """The sandbox configuration: QuickBooks' limits over a (scaled) window, realistic latency."""
    return {**LIMITS, "window_seconds": 60.0 * scale, "requests_per_second": max(10, round(10 / scale)),
            "latency_ms": latency_ms, "latency_per_batch_op_ms": op_latency_ms}


def client_env(scale: float) -> dict[str, str]:
    """The client's own limits set to the same, over the same window; production waits and timeouts."""
    return {"QBO_RATE_WINDOW_SECONDS": str(60.0 * scale), "QBO_REQUESTS_PER_SECOND": str(max(10, round(10 / scale))),
            "QBO_THROTTLE_WAIT_SECONDS": "60", "QBO_READ_TIMEOUT_SECONDS": "130", "QBO_BACKOFF_SECONDS": "1"}


def timed_push(lab: Lab, *args: str) -> tuple[float, dict, dict, int]:
    """Run `sync_invoices all` (with `args`); wall seconds, its JSON summary, the sandbox's counters, and
    the process's peak memory (KiB)."""
    lab.sandbox.reset_stats()
    started = time.monotonic()
    command = ["/usr/bin/time", "-f", "%M", *lab.command("all", *args, "--json")]
    result = subprocess.run(command, env=lab.env, capture_output=True, text=True, timeout=7200, cwd=lab.workdir)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"push failed ({result.returncode}): {result.stderr[-2000:]}")
    peak_kib = int(result.stderr.strip().splitlines()[-1])
    return elapsed, json.loads(result.stdout), lab.sandbox.stats(), peak_kib


def push_figures(args: argparse.Namespace, batch_size: int | None) -> dict:
    """Part 1: a backlog of new invoices and new customers pushed at QuickBooks' real limits; the ratio
    to the true ceiling. Part 2 (on the default run only): as many invoices again for the same
    customers, now known: reads per invoice."""
    lab = Lab("mariadb", invoices=args.invoices, students=args.customers, applicants=0, bad_rows=False,
              config=limits_config(args.scale, args.latency_ms, args.op_latency_ms), env=client_env(args.scale))
    try:
        with lab.mis.read() as conn:  # each student has invoices: M new customers, N invoices
            customers = conn.scalar(select(text("COUNT(DISTINCT reg_no)")).select_from(t.invoice))
        flags = [] if batch_size is None else ["--batch-size", str(batch_size)]
        elapsed, summary, stats, peak = timed_push(lab, *flags)
        operations = customers + args.invoices
        ceiling_seconds = operations / CEILING_PER_MINUTE * 60 * args.scale
        figures = {
            "batch_size": batch_size or "default", "invoices": args.invoices, "customers": customers,
            "synced": summary["synced"], "seconds": round(elapsed, 1),
            "invoices_per_minute": round(args.invoices / (elapsed / 60 / args.scale), 1),
            "operations": operations, "batch_requests": stats["batch_requests"], "requests": stats["requests"],
            "reads": stats["reads"], "ceiling_seconds": round(ceiling_seconds, 1),
            "ratio_to_ceiling": round(ceiling_seconds / elapsed, 3),
            "batches_only_seconds": round(operations / (40 * OPERATIONS) * 60 * args.scale, 1),
            "throttled": stats["throttled"], "throttled_real": stats["throttled_real"],
            "max_in_flight": stats["max_in_flight"], "peak_memory_mib": round(peak / 1024, 1),
        }
        if batch_size is None and args.known:
            with lab.mis.write() as conn:
                conn.execute(text(
                    "INSERT INTO tbl_imvoice (reg_no, fee_category, dept, invoice_date, QuickBk_Status) "
                    "SELECT reg_no, fee_category, dept, invoice_date, 0 FROM tbl_imvoice ORDER BY id"))
            time.sleep(60 * args.scale)  # let the first run's windows drain, so only reads are measured
            elapsed2, summary2, stats2, _ = timed_push(lab)
            figures["known"] = {"invoices": summary2["synced"], "seconds": round(elapsed2, 1),
                                "reads": stats2["reads"],
                                "reads_per_invoice": round(stats2["reads"] / max(summary2["synced"], 1), 4),
                                "throttled": stats2["throttled"]}
        return figures
    finally:
        lab.close()


def raw_figures(args: argparse.Namespace) -> dict:
    """Part 5: the tool itself, with the sandbox's limits and latency off: invoices a second and peak
    memory on backlogs of two sizes (memory must not grow with the backlog)."""
    figures = {}
    for invoices in (args.raw_invoices // 10, args.raw_invoices):
        lab = Lab("mariadb", invoices=invoices, students=max(invoices // 10, 1), applicants=0, bad_rows=False,
                  config={**UNLIMITED, "latency_ms": 0.0})
        lab.env.update({"QBO_REQUESTS_PER_MINUTE": str(10**8), "QBO_BATCH_REQUESTS_PER_MINUTE": str(10**7),
                        "QBO_REQUESTS_PER_SECOND": str(10**7)})
        try:
            elapsed, summary, stats, peak = timed_push(lab)
            figures[invoices] = {"seconds": round(elapsed, 1), "invoices_per_second": round(invoices / elapsed, 1),
                                 "synced": summary["synced"], "requests": stats["requests"],
                                 "peak_memory_mib": round(peak / 1024, 1)}
        finally:
            lab.close()
    return figures


class _PlainClient(QuickBooks):
    """python-quickbooks as an integration would use it, pointed at the sandbox (plain http)."""

    @property
    def api_url(self) -> str:  # type: ignore[override]
        return self._base

    def process_request(self, request_type, url, headers="", params="", data=""):  # type: ignore[override]
        headers.update({"Authorization": "Bearer " + self.auth_client.access_token})
        return self._http.request(request_type, url, headers=headers, params=params, data=data, timeout=60)


def plain_loop_figures(args: argparse.Namespace) -> dict:
    """Part 3: one invoice per request (plus its customer lookup), sequentially, on the same limits."""
    customers = max(1, round(args.plain_sample * args.customers / args.invoices))
    lab = Lab("mariadb", invoices=args.plain_sample, students=customers, applicants=0, bad_rows=False,
              config=limits_config(args.scale, args.latency_ms, args.op_latency_ms))
    try:
        tokens = lab.sandbox.issue_tokens()
        auth = AuthClient(lab.sandbox.config.client_id, lab.sandbox.config.client_secret,
                          "http://localhost:8765/callback", lab.sandbox.discovery_url,
                          access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])
        qb = _PlainClient(auth_client=auth, refresh_token=tokens["refresh_token"],
                          company_id=lab.sandbox.config.realm_id, minorversion=75)
        qb._base, qb._http = lab.sandbox.api_base, requests.Session()
        with lab.mis.read() as conn:
            rows = conn.execute(select(t.invoice.c.id, t.invoice.c.reg_no, t.invoice.c.dept,
                                       t.invoice.c.invoice_date, t.income_category.c.QuickBk_ctgId)
                                .join(t.income_category, t.income_category.c.id == t.invoice.c.fee_category)
                                .order_by(t.invoice.c.id)).all()
        lab.sandbox.reset_stats()
        started = time.monotonic()
        for row in rows:
            found = Customer.filter(DisplayName=row.reg_no, qb=qb)
            if found:
                customer = found[0]
            else:
                customer = Customer()
                customer.DisplayName = row.reg_no
                customer.save(qb=qb)
            invoice = Invoice()
            invoice.DocNumber = f"MIS-{row.id}"
            invoice.TxnDate = row.invoice_date.date().isoformat()
            invoice.CustomerRef = customer.to_ref()
            line = SalesItemLine()
            line.Amount = float(row.dept)  # as such loops do: a float
            line.SalesItemLineDetail = SalesItemLineDetail()
            line.SalesItemLineDetail.ItemRef = Ref()
            line.SalesItemLineDetail.ItemRef.value = str(row.QuickBk_ctgId)
            invoice.Line = [line]
            invoice.save(qb=qb)
            with lab.mis.write() as conn:
                conn.execute(t.invoice.update().where(t.invoice.c.id == row.id).values(QuickBk_Status=1))
        elapsed = time.monotonic() - started
        stats = lab.sandbox.stats()
        return {"invoices": len(rows), "customers": customers, "seconds": round(elapsed, 1),
                "invoices_per_minute": round(len(rows) / (elapsed / 60), 1), "requests": stats["requests"],
                "throttled": stats["throttled"]}
    finally:
        lab.close()


# One kind of bad row every 3,000 invoices (a few hundred in a million), each a rule of rules.RULES.
ANALYZE_BAD_ROWS = ("reg_no = NULL", "reg_no = CONCAT('EAUR/1999/NOBODY', id)", "reg_no = 'EAUR:2020'",
                    "fee_category = NULL", "fee_category = 99", "fee_category = 8", "dept = NULL", "dept = 0",
                    "dept = -250", "dept = 1234.567", "invoice_date = NULL",
                    "invoice_date = '0000-00-00 00:00:00'", "invoice_date = '1899-12-31'",
                    # and rows that are good although spelled otherwise: found by the database's comparison
                    "reg_no = CONCAT(LOWER(reg_no), ' ')", "reg_no = CONCAT(' ', reg_no, '  ')", "dept = 0.1 + 0.2")


def build_analyze_mis(mis: Mis, rows: int, backlog_pct: int) -> None:
    """A school's MIS: rows/50 students (every 50th reg_no held twice), an applicant's invoice every 50,
    seven mapped fee categories and an unmapped one, the bad rows above; the oldest rows synced."""
    students = max(rows // 50, 1)
    applicants = max(students // 10, 1)
    synced = rows - rows * backlog_pct // 100
    with mis.write() as conn:
        conn.execute(text("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'"))  # lets a zero date in
        conn.execute(text("INSERT INTO tbl_income_category (id, name, QuickBk_ctgId) VALUES (1, 'Tuition Fee', 1), "
                          "(2, 'Registration Fee', 2), (3, 'Library Fee', 3), (4, 'Examination Fee', 4), "
                          "(5, 'Accommodation Fee', 5), (6, 'Graduation Fee', 6), (7, 'Medical Fee', 7), "
                          "(8, 'Sports Fee', NULL)"))
        conn.execute(text(
            "INSERT INTO tbl_personal_ug (reg_no, fname, lname, email1, qk_id) "
            "SELECT CONCAT('EAUR/', 2000 + seq % 25, '/', LPAD(seq, 6, '0')), 'Jean', 'Mukamana', "
            f"CONCAT('s', seq, '@example.com'), IF(seq % 10 = 0, NULL, seq) FROM seq_1_to_{students}"))
        conn.execute(text("INSERT INTO tbl_personal_ug (reg_no, fname, lname) "
                          "SELECT reg_no, fname, 'Duplicate' FROM tbl_personal_ug WHERE per_id_ug % 50 = 0"))
        conn.execute(text("INSERT INTO tbl_online_application (tracking_id, first_name, family_name) "
                          f"SELECT CONCAT('APP-2025-', LPAD(seq, 6, '0')), 'Keza', 'Uwase' FROM seq_1_to_{applicants}"))
        conn.execute(text(
            "INSERT INTO tbl_imvoice (reg_no, fee_category, dept, invoice_date, QuickBk_Status, quickbooks_id, "
            "comment, user, date) "
            f"SELECT IF(seq % 50 = 7, CONCAT('APP-2025-', LPAD(seq % {applicants} + 1, 6, '0')), "
            f"CONCAT('EAUR/', 2000 + (seq % {students} + 1) % 25, '/', LPAD(seq % {students} + 1, 6, '0'))), "
            "1 + seq % 7, 1000 + (seq % 97) * 0.5, DATE_ADD('2015-01-01', INTERVAL seq % 4000 DAY), "
            f"IF(seq > {synced}, IF(seq % 100 = 0, 2, 0), 1), IF(seq > {synced}, NULL, seq), 'Semester fee', "
            f"'bursar', DATE_ADD('2015-01-01', INTERVAL seq % 4000 DAY) FROM seq_1_to_{rows}"))
        for kind, assignment in enumerate(ANALYZE_BAD_ROWS):
            conn.execute(text(f"UPDATE tbl_imvoice SET {assignment} WHERE id % 3000 = {kind * 37 + 11}"))
        conn.execute(text("ANALYZE TABLE tbl_imvoice, tbl_personal_ug, tbl_online_application"))


def settle(mis: Mis, dirty_pages: int = 500, patience: float = 120.0) -> None:
    """Wait for InnoDB to write the pages a bulk load left dirty: its background flushing would be
    measured with the first runs (at the server's innodb_io_capacity it takes a while)."""
    deadline = time.monotonic() + patience
    with mis.read() as conn:
        while time.monotonic() < deadline:
            dirty = conn.execute(text("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")).one()[1]
            if int(dirty) <= dirty_pages:
                return
            time.sleep(1.0)


def analyze_figures(args: argparse.Namespace) -> dict:
    """Part 4: `sync_invoices analyze` on a million-row MariaDB MIS, for each backlog, without and with
    the status index."""
    figures: dict = {"rows": args.analyze_rows, "shapes": {}}
    for backlog_pct in args.analyze_backlog:
        url, drop = scratch_mis("mariadb")
        mis = Mis.connect(url)
        try:
            mis.create_mis()
            started = time.monotonic()
            build_analyze_mis(mis, args.analyze_rows, backlog_pct)
            shape: dict = {"build_seconds": round(time.monotonic() - started, 1)}
            env = {**Lab.base_env(), "MIS_DATABASE_URL": url}

            def analyze(env: dict[str, str] = env) -> tuple[float, str]:
                begin = time.monotonic()
                done = subprocess.run([sys.executable, "-m", "sync_invoices", "analyze", "--json"], env=env,
                                      capture_output=True, text=True)
                assert done.returncode == 0, done.stderr
                return time.monotonic() - begin, done.stdout

            for index in ("without_index", "with_index", "with_baselines"):
                if index == "with_index":
                    mis.create_status_index()
                if index == "with_baselines":  # a steady state: every synced row pushed by this version
                    import bench_verify
                    mis.ensure_tables()
                    bench_verify.record_baselines(mis)
                settle(mis)
                analyze()  # warm-up: the first run after a load reads pages the next ones find cached
                runs = [analyze() for _ in range(args.analyze_repeats)]
                times = [seconds for seconds, _ in runs]
                document = json.loads(runs[0][1])
                assert all(json.loads(out) == document for _, out in runs), "analyze gave different answers"
                shape[index] = {"best": round(min(times), 3), "median": round(statistics.median(times), 3),
                                "runs": [round(x, 3) for x in times]}
                shape.update(eligible=document["eligible"], preflight_failures=document["preflight_failures"])
            figures["shapes"][f"{backlog_pct}%"] = shape
        finally:
            mis.close()
            drop()
    return figures


def main() -> int:
    """Run the parts asked for and print their figures (and a JSON document with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=4500)
    parser.add_argument("--customers", type=int, default=1500)
    parser.add_argument("--batch-sizes", default="default,1,1000",
                        help="`all` runs to measure: 'default' (no --batch-size) and/or sizes, comma-separated")
    parser.add_argument("--known", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure reads per invoice once customers are known")
    parser.add_argument("--raw-invoices", type=int, default=100_000, help="backlog of the unthrottled run")
    parser.add_argument("--scale", type=float, default=1.0, help="rate window = 60 s x scale")
    parser.add_argument("--latency-ms", type=float, default=120.0)
    parser.add_argument("--op-latency-ms", type=float, default=4.0)
    parser.add_argument("--plain-sample", type=int, default=150, help="invoices for the plain loop")
    parser.add_argument("--analyze-rows", type=int, default=1_000_000)
    parser.add_argument("--analyze-repeats", type=int, default=5)
    parser.add_argument("--analyze-backlog", type=int, action="append",
                        help="%% of the rows not synced yet (default: 70 and 5)")
    parser.add_argument("--verify-invoices", type=int, default=10_000, help="synced invoices verify reads back")
    parser.add_argument("--edit-rows", type=int, default=1_000_000, help="synced MIS rows for edit detection")
    parser.add_argument("--part", choices=("push", "plain", "analyze", "raw", "verify"), action="append")
    parser.add_argument("--json", action="store_true", help="also print all figures as one JSON document")
    args = parser.parse_args()
    parts = args.part or ["push", "plain", "analyze", "raw", "verify"]
    figures: dict = {"date": date.today().isoformat(), "scale": args.scale, "latency_ms": args.latency_ms,
                     "op_latency_ms": args.op_latency_ms}
    if "push" in parts:
        figures["push"] = []
        for size in args.batch_sizes.split(","):
            push = push_figures(args, None if size == "default" else int(size))
            figures["push"].append(push)
            print(f"push (all, batch size {push['batch_size']}): {push['invoices']} invoices of {push['customers']} "
                  f"new customers = {push['operations']} operations in {push['seconds']} s; "
                  f"{push['batch_requests']} batch requests, {push['requests']} requests, {push['reads']} reads")
            print(f"      true ceiling {push['ceiling_seconds']} s -> ratio {push['ratio_to_ceiling']:.0%} "
                  f"(batches alone: {push['batches_only_seconds']} s); 429s {push['throttled']}, "
                  f"highest in flight {push['max_in_flight']}, peak memory {push['peak_memory_mib']} MiB")
            if "known" in push:
                known = push["known"]
                print(f"known customers: {known['invoices']} invoices, {known['reads']} reads = "
                      f"{known['reads_per_invoice']} reads/invoice; 429s {known['throttled']}")
    if "plain" in parts:
        plain = figures["plain"] = plain_loop_figures(args)
        print(f"plain loop: {plain['invoices']} invoices of {plain['customers']} customers in {plain['seconds']} s = "
              f"{plain['invoices_per_minute']} invoices/min ({plain['requests']} requests, 429s {plain['throttled']})")
        if figures.get("push"):
            speedup = figures["push"][0]["invoices_per_minute"] / plain["invoices_per_minute"]
            figures["speedup_vs_plain"] = round(speedup, 1)
            print(f"sync_invoices vs plain loop: {speedup:.1f}x invoices/min")
    if "analyze" in parts:
        args.analyze_backlog = args.analyze_backlog or [70, 5]
        analyze = figures["analyze"] = analyze_figures(args)
        for name, shape in analyze["shapes"].items():
            print(f"analyze on {analyze['rows']:,} rows, {name} not synced (MariaDB, process start included): "
                  f"{shape['without_index']['best']} s best / {shape['without_index']['median']} s median without "
                  f"the status index; {shape['with_index']['best']} s / {shape['with_index']['median']} s with it; "
                  f"{shape['with_baselines']['best']} s / {shape['with_baselines']['median']} s with a sent baseline "
                  "for every synced row (edit detection included); "
                  f"{sum(shape['preflight_failures'].values())} of {shape['eligible']:,} eligible would fail")
    if "raw" in parts:
        raw = figures["raw"] = raw_figures(args)
        for invoices, row in raw.items():
            print(f"unthrottled: {invoices:,} invoices in {row['seconds']} s = {row['invoices_per_second']} "
                  f"invoices/s ({row['requests']} requests), peak memory {row['peak_memory_mib']} MiB")
        top = max(raw)
        ceiling = CEILING_PER_MINUTE / 60
        print(f"      {raw[top]['invoices_per_second'] / ceiling:.1f}x the true ceiling ({ceiling:.1f} operations/s)")
    if "verify" in parts:
        import bench_verify
        figures["verify"] = bench_verify.verify_figures(
            args.verify_invoices, {**limits_config(args.scale, args.latency_ms, args.op_latency_ms)},
            client_env(args.scale), UNLIMITED, window_seconds=60 * args.scale)
        figures["edit_detection"] = bench_verify.edit_detection_figures(args.edit_rows, args.analyze_repeats)
        bench_verify.print_figures(figures["verify"], figures["edit_detection"])
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
