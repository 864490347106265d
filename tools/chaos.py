"""Chaos scenarios for sync_invoices against the local QuickBooks sandbox.

Each scenario builds a fresh MIS (MariaDB by default), starts the sandbox in this process, runs
the real `sync_invoices` CLI as subprocesses while things go wrong (SIGKILL at every step of the
write protocol and at random moments, every sandbox fault at once, two runs at once, access
tokens dying mid-run), lets it resume, and counts what the sandbox and the MIS hold:

    duplicates  QuickBooks invoices beyond the first for one MIS-{id}
    lost        good MIS invoices not synced, or synced without their QuickBooks invoice
    stuck       MIS rows left in progress (status 3)
    wrong       synced rows whose quickbooks_id is not the invoice QuickBooks has for MIS-{id}

    python tools/chaos.py                       # every scenario on MariaDB
    python tools/chaos.py --mis sqlite --scenario random_kills --kills 50
    python tools/chaos.py --cli-python /path/to/older/venv/bin/python   # the same scenarios, another version

The test suite (tests/test_exactly_once.py) runs the same scenarios and requires all zeros.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/lab.py, when loaded from elsewhere
from lab import Lab  # noqa: E402

from qbo_sandbox import Faults  # noqa: E402
from sync_invoices.mis import tables as t  # noqa: E402
from sync_invoices.failpoints import POINTS  # noqa: E402


@dataclass
class Tally:
    """What a scenario left behind; every count but `runs`, `kills` and `invoices` must be 0."""

    scenario: str
    invoices: int = 0
    duplicates: int = 0
    lost: int = 0
    stuck: int = 0
    wrong: int = 0
    runs: int = 0
    kills: int = 0
    seconds: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)  # what the sandbox injected
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing was duplicated, lost, stuck or mislinked."""
        return self.duplicates == self.lost == self.stuck == self.wrong == 0


def measure(lab: Lab, scenario: str) -> Tally:
    """Count duplicates, lost, stuck and wrong links."""
    qbo = Counter(inv["DocNumber"] for inv in lab.sandbox.entities("Invoice"))
    qbo_id = {inv["DocNumber"]: inv["Id"] for inv in lab.sandbox.entities("Invoice")}
    with lab.mis.read() as conn:
        rows = {r.id: r for r in conn.execute(select(t.invoice.c.id, t.invoice.c.QuickBk_Status,
                                                     t.invoice.c.quickbooks_id))}
    tally = Tally(scenario, invoices=len(rows), runs=lab.runs, kills=lab.kills)
    tally.duplicates = sum(n - 1 for n in qbo.values() if n > 1)
    tally.stuck = sum(1 for r in rows.values() if r.QuickBk_Status == 3)
    for invoice_id in lab.generated.good:
        row, doc = rows[invoice_id], f"MIS-{invoice_id}"
        if row.QuickBk_Status != 1 or qbo[doc] == 0:
            tally.lost += 1
            tally.notes.append(f"lost {invoice_id}: status {row.QuickBk_Status}, in QuickBooks {qbo[doc]}x")
        elif row.quickbooks_id != qbo_id[doc]:
            tally.wrong += 1
    tally.lost += sum(1 for i in lab.generated.bad if qbo[f"MIS-{i}"])  # a bad row must never arrive
    return tally


def _timed(scenario: Callable[..., Tally]) -> Callable[..., Tally]:
    def run(*args: object, **kwargs: object) -> Tally:
        started = time.monotonic()
        tally = scenario(*args, **kwargs)
        tally.seconds = round(time.monotonic() - started, 1)
        return tally
    run.__name__ = scenario.__name__
    run.__doc__ = scenario.__doc__
    return run


def _combine(name: str, tallies: Iterator[Tally]) -> Tally:
    total = Tally(name)
    for part in tallies:
        for key in ("duplicates", "lost", "stuck", "wrong", "runs", "kills", "invoices"):
            setattr(total, key, getattr(total, key) + getattr(part, key))
        total.notes += [f"{part.scenario}: {n}" for n in part.notes]
    return total


# Short versions of QuickBooks' time rules, on both sides: the sandbox stops executing a request after
# CAP seconds; the tool waits CAP + MARGIN after a write was last sent before it settles it, and holds
# a dead run's rows for LEASE seconds. Every scenario runs with duplicate-DocNumber checking off, as a
# company may have it: nothing but the tool itself stands between a retry and a second invoice.
CAP, MARGIN, LEASE = 2.0, 1.0, 2.0
FAST_RULES = {"QBO_REQUEST_CAP_SECONDS": str(CAP), "SYNC_SETTLE_MARGIN_SECONDS": str(MARGIN),
              "SYNC_RUN_LEASE_SECONDS": str(LEASE), "SYNC_STOP_GRACE_SECONDS": "3"}
WORST = {"duplicate_docnumber_check": False, "request_cap_seconds": CAP}


def lab_for(kind: str, *, config: dict | None = None, env: dict | None = None, **kwargs: object) -> Lab:
    """A lab with the short time rules and the worst company settings."""
    return Lab(kind, config={**WORST, **(config or {})}, env={**FAST_RULES, **(env or {})}, **kwargs)  # type: ignore[arg-type]


@_timed
def kill_at_every_step(kind: str = "mariadb", *, cli_python: str | None = None) -> Tally:
    """SIGKILL at each failpoint of the write protocol (first and second time reached), then resume."""
    def one(point: str, nth: int) -> Tally:
        # Claims of 100: every step is reached at least twice in a run of 240 invoices.
        lab = lab_for(kind, invoices=240, students=100, latency_ms=5, cli_python=cli_python,
                      env={"SYNC_RETRY_DELAY_SECONDS": "0"})
        try:
            if point == "write_looked_up":  # half the answers are lost: writes on record wait to be settled
                lab.sandbox.set_faults(Faults(seed=nth, lost_response_rate=0.5))
            result = lab.run("all", "--batch-size", "20", failpoint=f"{point}:{nth}")
            lab.sandbox.set_faults(Faults())
            tally = Tally(f"{point}:{nth}")
            if result.returncode != -signal.SIGKILL:
                tally.notes.append(f"not killed (exit {result.returncode})")
            lab.finish()
            found = measure(lab, f"{point}:{nth}")
            found.notes += tally.notes
            return found
        finally:
            lab.close()
    return _combine("kill_at_every_step", (one(p, n) for p in POINTS for n in (1, 2)))


@_timed
def random_kills(kind: str = "mariadb", *, kills: int = 20, invoices: int = 400, seed: int = 7,
                 cli_python: str | None = None) -> Tally:
    """SIGKILL `all` at random moments, many times over, then let it finish."""
    rng = random.Random(seed)
    lab = lab_for(kind, invoices=invoices, students=invoices // 2, latency_ms=40, cli_python=cli_python)
    try:
        for _ in range(kills):
            process = lab.start("all", "--batch-size", "20")
            time.sleep(rng.uniform(0.6, 1.8))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                lab.kills += 1
            process.wait()
        lab.finish()
        return measure(lab, "random_kills")
    finally:
        lab.close()


@_timed
def prompt_restarts(kind: str = "mariadb", *, invoices: int = 360, moments: tuple[float, ...] = (1.2, 2.4, 3.6),
                    cli_python: str | None = None) -> Tally:
    """A large claim whose last writes go out late and execute slowly (batch items 50 ms apart): SIGKILL
    at several moments, each followed at once by a new run, as systemd's Restart=on-failure or an
    operator re-running after Ctrl-C do. A write QuickBooks may still be executing must not be re-sent
    or released."""
    lab = lab_for(kind, invoices=invoices, students=invoices // 3, latency_ms=30,
                  config={"latency_per_batch_op_ms": 50}, cli_python=cli_python)
    try:
        for moment in moments:
            process = lab.start("all", "--batch-size", str(invoices))
            time.sleep(moment)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                lab.kills += 1
            process.wait()
        lab.finish()
        return measure(lab, "prompt_restarts")
    finally:
        lab.close()


def _lock_connection(lab: Lab, timeout: float = 20.0) -> int | None:
    """The MariaDB session holding the company lock, once a run holds it."""
    name = f"sync_invoices:{lab.sandbox.config.realm_id}"[:64]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with lab.mis.engine.connect() as conn:
            holder = conn.execute(text("SELECT IS_USED_LOCK(:n)"), {"n": name}).scalar()
        if holder:
            return int(holder)
        time.sleep(0.05)
    return None


@_timed
def lock_session_killed(kind: str = "mariadb", *, invoices: int = 300, cli_python: str | None = None) -> Tally:
    """The session holding the company lock is killed mid-run (a DBA, a network blip, a restart of that
    connection) and a second run starts at once and takes the lock: rows the first run claimed are its
    own until it is gone; no invoice is pushed twice."""
    lab = lab_for(kind, invoices=invoices, students=invoices // 2, latency_ms=30,
                  config={"latency_per_batch_op_ms": 20}, cli_python=cli_python)
    try:
        first = lab.start("all", "--batch-size", "60")
        holder = _lock_connection(lab)
        time.sleep(1.0)
        tally = Tally("lock_session_killed")
        if holder is None:
            tally.notes.append("the first run never held the lock")
        else:
            with lab.mis.engine.connect() as conn:
                conn.execute(text(f"KILL CONNECTION {holder}"))
        second = lab.start("all", "--batch-size", "60")
        codes = sorted(p.wait() for p in (first, second))
        lab.finish()
        found = measure(lab, "lock_session_killed")
        found.notes += tally.notes + ([f"exit codes {codes}"] if any(c not in (0, 1, 4) for c in codes) else [])
        return found
    finally:
        lab.close()


@_timed
def wait_timeout_expires(kind: str = "mariadb", *, invoices: int = 240, cli_python: str | None = None) -> Tally:
    """The MIS server closes idle sessions after 2 s (`wait_timeout`, 8 h by default and shorter than a
    first migration): the lock's session expires mid-run, and a second run is started meanwhile."""
    from scratch_mariadb import ScratchMariaDB
    with ScratchMariaDB("--wait-timeout=2") as server:
        url = server.create_database("mis")
        lab = lab_for("mariadb", invoices=invoices, students=invoices // 2, latency_ms=30, url=url,
                      config={"latency_per_batch_op_ms": 30}, cli_python=cli_python,
                      env={"SYNC_RUN_LEASE_SECONDS": "15"})  # heartbeats 5 s apart: longer than wait_timeout
        try:
            first = lab.start("all", "--batch-size", "60")
            time.sleep(4.0)
            second = lab.start("all", "--batch-size", "60")
            codes = sorted(p.wait() for p in (first, second))
            lab.finish()
            found = measure(lab, "wait_timeout_expires")
            found.notes += [f"exit codes {codes}"] if any(c not in (0, 1, 4) for c in codes) else []
            return found
        finally:
            lab.close()


@_timed
def timeouts_shorter_than_execution(kind: str = "mariadb", *, invoices: int = 150,
                                    cli_python: str | None = None) -> Tally:
    """Batch items take 150 ms each (a batch of 30 takes 4.5 s) and the tool gives up waiting after 1 s:
    almost every write times out while QuickBooks goes on executing it. Nothing may be sent twice."""
    lab = lab_for(kind, invoices=invoices, students=invoices // 2, latency_ms=10,
                  config={"latency_per_batch_op_ms": 150, "request_cap_seconds": 6.0},
                  env={"QBO_READ_TIMEOUT_SECONDS": "1", "QBO_REQUEST_CAP_SECONDS": "6",
                       "SYNC_MAX_ATTEMPTS": "1000", "SYNC_RETRY_DELAY_SECONDS": "0"}, cli_python=cli_python)
    try:
        lab.finish(max_runs=6)
        return measure(lab, "timeouts_shorter_than_execution")
    finally:
        lab.close()


@_timed
def all_faults(kind: str = "mariadb", *, invoices: int = 320, seed: int = 11, cli_python: str | None = None) -> Tally:
    """Every sandbox fault at once over 300+ invoices; re-run until done."""
    faults = Faults(seed=seed, error_500_rate=0.08, html_503_rate=0.08, lost_response_rate=0.12, throttle_rate=0.06,
                    throttle_burst=2, retry_after_seconds=0.2, token_death_rate=0.03, slow_rate=0.06,
                    slow_seconds=1.2, slow_before_write_rate=0.06, token_endpoint_500_rate=0.2,
                    **({"truncated_rate": 0.06} if "truncated_rate" in Faults.__dataclass_fields__ else {}))
    # Small batches (10 operations) and many retries, so every fault strikes often: the batch limit is
    # raised on both sides so that the run measures faults, not the (correct) wait for the window.
    env = {"QBO_READ_TIMEOUT_SECONDS": "1", "QBO_REQUEST_ATTEMPTS": "3", "SYNC_RETRY_DELAY_SECONDS": "0",
           "SYNC_MAX_ATTEMPTS": "1000", "QBO_BATCH_REQUESTS_PER_MINUTE": "400", "QBO_BATCH_OPERATIONS": "10"}
    lab = lab_for(kind, invoices=invoices, students=invoices // 2, latency_ms=5, faults=faults, env=env, seed=seed,
                  cli_python=cli_python)
    lab.sandbox.set_limits(batch_requests_per_minute=400)
    try:
        lab.finish(max_runs=15, batch_size=10)
        tally = measure(lab, "all_faults")
        tally.faults = dict(lab.sandbox.stats()["faults_injected"])
        return tally
    finally:
        lab.close()


@_timed
def two_runs_at_once(kind: str = "mariadb", *, invoices: int = 200, cli_python: str | None = None) -> Tally:
    """Two `all` processes started together on one company: the lock lets one push."""
    lab = lab_for(kind, invoices=invoices, students=invoices // 2, latency_ms=15, cli_python=cli_python)
    try:
        first, second = lab.start("all", "--batch-size", "20"), lab.start("all", "--batch-size", "20")
        codes = sorted((first.wait(), second.wait()))
        tally = measure(lab, "two_runs_at_once")
        if codes != [1, 4]:  # bad rows end failed (1); the loser exits 4
            tally.notes.append(f"exit codes {codes}")
        return tally
    finally:
        lab.close()


@_timed
def tokens_expire_mid_run(kind: str = "mariadb", *, invoices: int = 200, cli_python: str | None = None) -> Tally:
    """Access tokens die while `all` runs; the run refreshes and carries on in one go."""
    lab = lab_for(kind, invoices=invoices, students=invoices // 2, latency_ms=20,
                  faults=Faults(seed=5, token_death_rate=0.05), cli_python=cli_python)
    try:
        process = lab.start("all", "--batch-size", "20")
        stop = threading.Event()

        def expire() -> None:
            while not stop.wait(0.4):
                lab.sandbox.expire_access_tokens()
        expirer = threading.Thread(target=expire, daemon=True)
        expirer.start()
        code = process.wait()
        stop.set()
        tally = measure(lab, "tokens_expire_mid_run")
        refreshes = lab.sandbox.stats()["token_refreshes"]
        if code != 1 or refreshes < 2:
            tally.notes.append(f"exit {code}, {refreshes} refreshes: {process.stderr.read() if process.stderr else ''}")
        return tally
    finally:
        lab.close()


SCENARIOS = {f.__name__: f for f in (kill_at_every_step, random_kills, prompt_restarts, lock_session_killed,
                                     wait_timeout_expires, timeouts_shorter_than_execution, all_faults,
                                     two_runs_at_once, tokens_expire_mid_run)}
MARIADB_ONLY = ("lock_session_killed", "wait_timeout_expires")


def main() -> int:
    """Run the chosen scenarios and print their counts; exit 1 if any is not clean."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mis", choices=("mariadb", "sqlite"), default="mariadb")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--kills", type=int, default=20, help="random_kills: how many kills")
    parser.add_argument("--cli-python", help="run the CLI of another installation (its Python), e.g. an older version")
    args = parser.parse_args()
    print(f"{'scenario':24} {'invoices':>8} {'runs':>5} {'kills':>5} {'dup':>4} {'lost':>5} {'stuck':>5} "
          f"{'wrong':>5} {'secs':>6}")
    clean = True
    for name in args.scenario or list(SCENARIOS):
        if args.mis == "sqlite" and name in MARIADB_ONLY:
            continue
        kwargs: dict = {"kills": args.kills} if name == "random_kills" else {}
        kwargs["cli_python"] = args.cli_python
        tally = SCENARIOS[name](args.mis, **kwargs)
        clean &= tally.clean
        print(f"{name:24} {tally.invoices:8} {tally.runs:5} {tally.kills:5} {tally.duplicates:4} {tally.lost:5} "
              f"{tally.stuck:5} {tally.wrong:5} {tally.seconds:6}", flush=True)
        if tally.faults:
            print(f"    faults injected: {tally.faults}")
        for note in tally.notes[:10]:
            print(f"    {note}")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
