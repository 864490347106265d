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

from sqlalchemy import func, select, text

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
        # Claims of 100: every step is reached at least twice in a run of 130 invoices.
        lab = lab_for(kind, invoices=130, students=60, latency_ms=5, cli_python=cli_python,
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
            lab.kill(process)
        lab.finish()
        return measure(lab, "random_kills")
    finally:
        lab.close()


def _writes_sent(lab: Lab) -> int:
    with lab.mis.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(t.audit).where(t.audit.c.action == "write_sent")) or 0


@_timed
def prompt_restarts(kind: str = "mariadb", *, invoices: int = 360, delays: tuple[float, ...] = (0.2, 0.8, 1.5),
                    cli_python: str | None = None) -> Tally:
    """A large claim whose writes execute slowly (batch items 50 ms apart): each run is SIGKILLed a moment
    after it sent its first write (while QuickBooks still executes it), and a new run starts at once, as
    systemd's Restart=on-failure or an operator re-running after Ctrl-C do. A write QuickBooks may still
    be executing must not be re-sent or released."""
    lab = lab_for(kind, invoices=invoices, students=invoices // 3, latency_ms=30,
                  config={"latency_per_batch_op_ms": 50}, cli_python=cli_python)
    try:
        for delay in delays:
            before = _writes_sent(lab) if cli_python is None else 0
            process = lab.start("all", "--batch-size", str(invoices))
            deadline = time.monotonic() + 30
            while process.poll() is None and time.monotonic() < deadline:
                if cli_python is not None or _writes_sent(lab) > before:
                    break  # this run has a write out (an older version is killed after a fixed time instead)
                time.sleep(0.05)
            time.sleep(delay if cli_python is None else 1.2 + delay)
            lab.kill(process)
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
                    throttle_burst=2, retry_after_seconds=0.2, token_death_rate=0.06, slow_rate=0.06,
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


# -- the MIS side failing: lost connections, a restarted server, signals, a concurrent writer (issue 13) ------

LOST = ("Lost the connection to the MIS database at", "Cannot reach the MIS database at")
REFUSED = ("kept refusing a transaction",)


def _judge_exit(tally: Tally, what: str, code: int, stderr: str, expected: dict[int, tuple[str, ...]]) -> None:
    """A run's exit code must be one of `expected`, with one `error:` line containing one of its phrases (no
    phrase: no error line at all); never a traceback. Exit codes are counted in tally.faults."""
    tally.faults[f"exit {code}"] = tally.faults.get(f"exit {code}", 0) + 1
    text = " ".join(stderr.split())
    if "Traceback" in stderr or "Exception ignored" in stderr or "Logging error" in stderr:
        tally.notes.append(f"{what}: a traceback on stderr: {stderr[-600:]}")
    if code not in expected:
        tally.notes.append(f"{what}: exit {code}: {text[-300:]}")
        return
    phrases = expected[code]
    if phrases and not (text.count("error: ") == 1 and any(p in text for p in phrases)):
        tally.notes.append(f"{what}: exit {code} without its one clear line: {text[-300:]}")
    if not phrases and "error: " in text:
        tally.notes.append(f"{what}: exit {code} with an error: {text[-300:]}")


def _server(lab: Lab):
    """A plain connection to the lab MIS's server (autocommit), for a second session."""
    import pymysql
    from sqlalchemy.engine import make_url
    url = make_url(lab.url)
    return pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                           password=url.password or "", autocommit=True, connect_timeout=5)


def _finish(lab: Lab, tally: Tally, what: str = "the normal run after") -> None:
    """The normal run(s) that follow: exit 0 or 1 (bad rows), nothing else."""
    result = lab.finish()
    _judge_exit(tally, what, result.returncode, result.stderr, {0: (), 1: ()})


def _done(lab: Lab, name: str, tally: Tally) -> Tally:
    found = measure(lab, name)
    found.notes = tally.notes + found.notes
    found.faults = tally.faults
    return found


class _Killer(threading.Thread):
    """A second session that kills the sessions of the lab's database (KILL CONNECTION) at random moments:
    any of them, or (a `busy_share` of the time) one busy with a statement or inside a transaction."""

    def __init__(self, lab: Lab, rng: random.Random, every: tuple[float, float], busy_share: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.lab, self.rng, self.every, self.busy_share = lab, rng, every, busy_share
        self.database = lab.url.rsplit("/", 1)[1]
        self.stop = threading.Event()
        self.kills = 0
        self.busy_kills = 0

    def run(self) -> None:
        conn = _server(self.lab)
        try:
            while not self.stop.wait(self.rng.uniform(*self.every)):
                victim, busy = self._pick(conn)
                if victim is None:
                    continue
                try:
                    with conn.cursor() as cur:
                        cur.execute(f"KILL CONNECTION {victim}")
                    self.kills += 1
                    self.busy_kills += busy
                except Exception:  # noqa: BLE001 - it ended by itself meanwhile
                    pass
        finally:
            conn.close()

    def _pick(self, conn) -> tuple[int | None, bool]:
        deadline = time.monotonic() + (0.3 if self.rng.random() < self.busy_share else 0.0)
        rows: list = []
        while not self.stop.is_set():
            with conn.cursor() as cur:
                cur.execute("SELECT p.ID, p.COMMAND <> 'Sleep' OR x.trx_id IS NOT NULL FROM information_schema.PROCESSLIST p "
                            "LEFT JOIN information_schema.INNODB_TRX x ON x.trx_mysql_thread_id = p.ID "
                            "WHERE p.DB = %s AND p.ID <> CONNECTION_ID()", (self.database,))
                rows = list(cur.fetchall())
            busy = [r[0] for r in rows if r[1]]
            if busy and deadline > time.monotonic():
                return self.rng.choice(busy), True
            if time.monotonic() >= deadline:
                break
            time.sleep(0.005)
        if not rows:
            return None, False
        victim = self.rng.choice(rows)
        return victim[0], bool(victim[1])


@_timed
def connections_killed(kind: str = "mariadb", *, runs: int = 8, invoices: int = 600, seed: int = 13,
                       cli_python: str | None = None) -> Tally:
    """A second session kills the sessions of `all` (KILL CONNECTION, as a DBA or a proxy does) several times
    per run at random moments: a killed idle session is replaced unnoticed; a killed statement stops the run
    with exit 2 and one line naming the MIS. Then a normal run: nothing lost, nothing twice."""
    rng = random.Random(seed)
    lab = lab_for(kind, invoices=invoices, students=invoices // 2, latency_ms=40,
                  config={"latency_per_batch_op_ms": 20}, cli_python=cli_python)
    tally = Tally("connections_killed")
    try:
        kills = busy = 0
        for n in range(runs):
            process = lab.start("all", "--batch-size", "20")
            killer = _Killer(lab, rng, (0.1, 0.4))
            killer.start()
            _, stderr = process.communicate(timeout=300)
            killer.stop.set()
            killer.join()
            kills, busy = kills + killer.kills, busy + killer.busy_kills
            _judge_exit(tally, f"run {n + 1}", process.returncode, stderr, {0: (), 1: (), 2: LOST})
        tally.faults.update({"connections killed": kills, "of them mid-statement or mid-transaction": busy})
        _finish(lab, tally)
        return _done(lab, "connections_killed", tally)
    finally:
        lab.close()


@_timed
def server_restart(kind: str = "mariadb", *, invoices: int = 400, moments: tuple[float, ...] = (1.0, 2.5),
                   pause: float = 2.0, cli_python: str | None = None) -> Tally:
    """The MIS server (a throwaway mariadbd) is stopped mid-run and started again `pause` seconds later, once
    per run at each of `moments`: the run stops with exit 2 and one line naming the MIS; then a normal run."""
    from scratch_mariadb import ScratchMariaDB
    tally = Tally("server_restart")
    with ScratchMariaDB() as server:
        url = server.create_database("mis")
        lab = lab_for("mariadb", invoices=invoices, students=invoices // 2, latency_ms=40, url=url,
                      config={"latency_per_batch_op_ms": 10}, cli_python=cli_python)
        try:
            for n, moment in enumerate(moments):
                process = lab.start("all", "--batch-size", "20")
                time.sleep(moment)
                if process.poll() is not None:
                    tally.notes.append(f"run {n + 1} ended before the restart")
                server.restart(pause)
                tally.faults["restarts"] = tally.faults.get("restarts", 0) + 1
                _, stderr = process.communicate(timeout=300)
                # A run that happened to touch no database while it was down reconnects and goes on (0, 1).
                _judge_exit(tally, f"run {n + 1}", process.returncode, stderr, {0: (), 1: (), 2: LOST})
            _finish(lab, tally)
            return _done(lab, "server_restart", tally)
        finally:
            lab.close()


def _interrupted(lab: Lab, tally: Tally, what: str, code: int, *, applied: bool = True) -> None:
    """After a graceful stop: the run is recorded interrupted with its exit code; with `applied`, no write it
    sent waits for an answer (what was in flight was answered within the grace and applied)."""
    from sync_invoices.mis import from_db_utc
    from sync_invoices.mis.bookkeeping import open_writes
    with lab.mis.read() as conn:
        run = conn.execute(select(t.runs).order_by(t.runs.c.id.desc()).limit(1)).one()
    if (run.state, run.exit_code) != ("interrupted", code) or run.finished is None:
        tally.notes.append(f"{what}: recorded {run.state} / exit {run.exit_code}, not interrupted / {code}")
    started = from_db_utc(run.started)
    if applied and [w for w in open_writes(lab.mis, run.id) if w.sent_at is None or w.sent_at >= started]:
        tally.notes.append(f"{what}: writes it sent still open after the grace: answers not applied")


STOPPED = {130: ("Stopped by SIGINT",), 143: ("Stopped by SIGTERM",)}


def _run_count(lab: Lab) -> int:
    """How many runs qb_sync_runs holds."""
    from sqlalchemy import func
    with lab.mis.read() as conn:
        return conn.scalar(select(func.count()).select_from(t.runs)) or 0
AT_ONCE = "stopped at once"


@_timed
def signals_at_random_moments(kind: str = "mariadb", *, signals: int = 8, invoices: int = 600, seed: int = 17,
                              cli_python: str | None = None) -> Tally:
    """SIGTERM and SIGINT (alternately) at random moments of `all`: a graceful stop each time (exit 143 / 130,
    recorded interrupted, in-flight answers applied); every third run gets a second signal 0.1 s later and
    ends at once. Then a normal run."""
    rng = random.Random(seed)
    # Batch items take 50 ms: a batch of 30 is in flight 1.5 s, so a graceful stop has answers to wait for.
    lab = lab_for(kind, invoices=invoices, students=invoices // 2, latency_ms=40,
                  config={"latency_per_batch_op_ms": 50}, cli_python=cli_python)
    tally = Tally("signals_at_random_moments")
    try:
        for n in range(signals):
            first = (signal.SIGTERM, signal.SIGINT)[n % 2]
            twice = n % 3 == 2
            runs = _run_count(lab)
            process = lab.start("all", "--batch-size", "20")
            while _run_count(lab) == runs and process.poll() is None:
                time.sleep(0.01)  # a moment of the run: the process has started it
            time.sleep(rng.uniform(0.0, 1.5))
            if process.poll() is not None:
                tally.notes.append(f"run {n + 1} ended before its signal (exit {process.returncode})")
                continue
            process.send_signal(first)
            tally.faults[first.name] = tally.faults.get(first.name, 0) + 1
            if twice:
                time.sleep(0.1)
                second = (signal.SIGINT, signal.SIGTERM)[n % 2]
                if process.poll() is None:
                    process.send_signal(second)
                    tally.faults["second signals"] = tally.faults.get("second signals", 0) + 1
            _, stderr = process.communicate(timeout=120)
            code = process.returncode
            if twice and AT_ONCE in stderr:
                tally.faults["ended at once"] = tally.faults.get("ended at once", 0) + 1
                tally.faults[f"exit {code}"] = tally.faults.get(f"exit {code}", 0) + 1
                if code != 128 + second or "Traceback" in stderr:
                    tally.notes.append(f"run {n + 1}: ended at once with exit {code}: {stderr[-300:]}")
            else:
                _judge_exit(tally, f"run {n + 1}", code, stderr, {128 + first: STOPPED[128 + first]})
                _interrupted(lab, tally, f"run {n + 1}", 128 + first)
        time.sleep(CAP + MARGIN)  # what an immediate end left in flight may be settled now
        _finish(lab, tally)
        return _done(lab, "signals_at_random_moments", tally)
    finally:
        lab.close()


@_timed
def signals_at_every_step(kind: str = "mariadb", *, cli_python: str | None = None) -> Tally:
    """At each step of the write protocol a run gets SIGTERM (the failpoint sends it), then the next run SIGINT
    at the same step: each stops gracefully (143 / 130, recorded interrupted, answers received applied).
    Then a normal run."""
    tally = Tally("signals_at_every_step")
    for point in POINTS:
        lab = lab_for(kind, invoices=240, students=100, latency_ms=5, cli_python=cli_python,
                      env={"SYNC_RETRY_DELAY_SECONDS": "0"})
        try:
            looked_up = point == "write_looked_up"
            for how in ("TERM", "INT"):
                code = 128 + getattr(signal, f"SIG{how}")
                if looked_up:  # half the answers are lost: writes on record wait to be settled
                    lab.sandbox.set_faults(Faults(seed=code, lost_response_rate=0.5))
                result = lab.run("all", "--batch-size", "20", failpoint=f"{point}:1:{how}")
                lab.sandbox.set_faults(Faults())
                tally.faults[f"SIG{how}"] = tally.faults.get(f"SIG{how}", 0) + 1
                _judge_exit(tally, f"{point}:{how}", result.returncode, result.stderr, {code: STOPPED[code]})
                _interrupted(lab, tally, f"{point}:{how}", code, applied=not looked_up)
            _finish(lab, tally, f"{point}: the normal run after")
            found = measure(lab, point)
            for key in ("duplicates", "lost", "stuck", "wrong", "runs", "invoices"):
                setattr(tally, key, getattr(tally, key) + getattr(found, key))
            tally.notes += [f"{point}: {note}" for note in found.notes]
        finally:
            lab.close()
    return tally


class _MisApplication(threading.Thread):
    """The MIS web application at work: it updates invoice rows the run is claiming or marking (a column the
    tool never reads), several at a time in descending id order (the tool goes ascending), holding them a
    moment - deadlocks and lock waits with the tool's transactions."""

    def __init__(self, lab: Lab, rng: random.Random, hold: tuple[float, float], stubborn: int = 0) -> None:
        super().__init__(daemon=True)
        self.lab, self.rng, self.hold, self.stubborn = lab, rng, hold, stubborn
        self.stop = threading.Event()
        self.transactions = self.deadlocks = self.lock_waits = self.long_holds = 0

    def run(self) -> None:
        import pymysql
        conn = _server(self.lab)
        conn.select_db(self.lab.url.rsplit("/", 1)[1])
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.execute("SET SESSION innodb_lock_wait_timeout = 2")
        conn.autocommit(False)
        try:
            while not self.stop.is_set():
                try:
                    with conn.cursor() as cur:
                        # the rows of one write in flight (their answer is about to be applied), else the
                        # next to be claimed
                        cur.execute("SELECT invoice_id FROM qb_invoice_state WHERE request_id = (SELECT MIN(request_id) "
                                    "FROM qb_invoice_state WHERE request_id IS NOT NULL) ORDER BY invoice_id DESC LIMIT 12")
                        ids = [r[0] for r in cur.fetchall()]
                        in_flight = bool(ids)
                        if not ids:
                            cur.execute("SELECT id FROM tbl_imvoice WHERE QuickBk_Status IN (0, 3) "
                                        "ORDER BY QuickBk_Status DESC, id LIMIT 12")
                            ids = sorted((r[0] for r in cur.fetchall()), reverse=True)
                        stubborn = (self.stubborn and in_flight
                                    and self.transactions % self.stubborn == self.stubborn - 1)
                        if stubborn:  # the whole write's rows at once, then held past the tool's patience
                            cur.execute("UPDATE tbl_imvoice SET balance = COALESCE(balance, 0) + 1 WHERE id IN "
                                        f"({', '.join(map(str, ids))})")
                        for invoice_id in ids if not stubborn else ():
                            cur.execute("UPDATE tbl_imvoice SET balance = COALESCE(balance, 0) + 1 WHERE id = %s",
                                        (invoice_id,))
                            time.sleep(0.05)
                    if stubborn:
                        self.long_holds += 1
                        self.stop.wait(8.0)  # longer than the tool's five 1-second lock waits
                    else:
                        self.stop.wait(self.rng.uniform(*self.hold))
                    conn.commit()
                    self.transactions += 1
                except pymysql.MySQLError as error:
                    conn.rollback()
                    code = error.args[0] if error.args else None
                    self.deadlocks += code == 1213
                    self.lock_waits += code == 1205
        finally:
            conn.rollback()
            conn.close()


def _retries(lab: Lab) -> dict[str, int]:
    """What the tool's log says it ran again: deadlocks (1213) and lock-wait timeouts (1205)."""
    text = (lab.workdir / "logs" / "sync_invoices.log").read_text(errors="replace") if \
        (lab.workdir / "logs" / "sync_invoices.log").exists() else ""
    retried = [line for line in text.splitlines() if "rolled back a transaction" in line]
    return {"tool retries after 1213": sum("(1213)" in line for line in retried),
            "tool retries after 1205": sum("(1205)" in line for line in retried)}


@_timed
def concurrent_writer(kind: str = "mariadb", *, runs: int = 4, invoices: int = 400, seed: int = 19,
                      cli_python: str | None = None) -> Tally:
    """While `all` runs (again after a stop, up to `runs` times), the MIS application updates the same
    tbl_imvoice rows: deadlocks (the tool's transaction or the application's is the victim) and lock waits
    (1 s for the tool). The tool runs its transaction again; a run whose rows stay locked through five
    attempts stops with exit 2 and one line. Then, the application done, a normal run."""
    from sync_invoices.mis.claims import count_eligible
    rng = random.Random(seed)
    lab = lab_for(kind, invoices=invoices, students=invoices // 2, latency_ms=20,
                  config={"latency_per_batch_op_ms": 30}, env={"MIS_LOCK_WAIT_SECONDS": "1"}, cli_python=cli_python)
    tally = Tally("concurrent_writer")
    applications = [_MisApplication(lab, random.Random(rng.random()), (0.2, 2.0), stubborn=stubborn)  # two users
                    for stubborn in (0, 4)]
    for application in applications:
        application.start()
    try:
        for n in range(runs):
            process = lab.start("all", "--batch-size", "20")
            _, stderr = process.communicate(timeout=300)
            _judge_exit(tally, f"run {n + 1}", process.returncode, stderr, {0: (), 1: (), 2: REFUSED})
            if process.returncode != 2 and not count_eligible(lab.mis):
                break
    finally:
        for application in applications:
            application.stop.set()
            application.join()
    try:
        _finish(lab, tally)
        tally.faults.update({"application transactions": sum(a.transactions for a in applications),
                             "application deadlock victim": sum(a.deadlocks for a in applications),
                             "application lock waits": sum(a.lock_waits for a in applications),
                             "application holds of 8 s": sum(a.long_holds for a in applications), **_retries(lab)})
        if not tally.faults["tool retries after 1213"] + tally.faults["application deadlock victim"]:
            tally.notes.append("no deadlock happened")
        return _done(lab, "concurrent_writer", tally)
    finally:
        lab.close()


SCENARIOS = {f.__name__: f for f in (kill_at_every_step, random_kills, prompt_restarts, lock_session_killed,
                                     wait_timeout_expires, timeouts_shorter_than_execution, all_faults,
                                     two_runs_at_once, tokens_expire_mid_run,
                                     connections_killed, server_restart, signals_at_random_moments,
                                     signals_at_every_step, concurrent_writer)}
MARIADB_ONLY = ("lock_session_killed", "wait_timeout_expires",
                "connections_killed", "server_restart", "concurrent_writer")


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
