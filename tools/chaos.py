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

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/lab.py, when loaded from elsewhere
from lab import Lab  # noqa: E402

from qbo_sandbox import Faults  # noqa: E402
from sync_invoices import tables as t  # noqa: E402
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


@_timed
def kill_at_every_step(kind: str = "mariadb") -> Tally:
    """SIGKILL at each failpoint of the write protocol (first and second time reached), then resume."""
    def one(point: str, nth: int) -> Tally:
        lab = Lab(kind, invoices=60, students=25, latency_ms=5)
        try:
            if point == "recovery_resent":  # needs a pending write that was never sent
                lab.run("all", "--batch-size", "60", failpoint="write_recorded:1")  # two writes of 30
            result = lab.run("all", "--batch-size", "20", failpoint=f"{point}:{nth}")
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
def random_kills(kind: str = "mariadb", *, kills: int = 20, invoices: int = 400, seed: int = 7) -> Tally:
    """SIGKILL `all` at random moments, many times over, then let it finish."""
    rng = random.Random(seed)
    lab = Lab(kind, invoices=invoices, students=invoices // 2, latency_ms=40)
    try:
        for _ in range(kills):
            process = lab.start("all", "--batch-size", "20")
            time.sleep(rng.uniform(0.4, 1.6))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                lab.kills += 1
            process.wait()
        lab.finish()
        return measure(lab, "random_kills")
    finally:
        lab.close()


@_timed
def all_faults(kind: str = "mariadb", *, invoices: int = 320, seed: int = 11) -> Tally:
    """Every sandbox fault at once over 300+ invoices; re-run until done."""
    faults = Faults(seed=seed, error_500_rate=0.08, html_503_rate=0.08, lost_response_rate=0.12, throttle_rate=0.06,
                    throttle_burst=2, retry_after_seconds=0.2, token_death_rate=0.03, slow_rate=0.06,
                    slow_seconds=1.2, slow_before_write_rate=0.06, token_endpoint_500_rate=0.2)
    # Small batches and many retries: the batch limit is raised on both sides so that the run
    # measures faults, not the (correct) wait for the 40-per-minute window.
    env = {"QBO_READ_TIMEOUT_SECONDS": "1", "QBO_REQUEST_ATTEMPTS": "3", "SYNC_RETRY_DELAY_SECONDS": "0",
           "SYNC_MAX_ATTEMPTS": "1000", "SYNC_CLAIM_LEASE_SECONDS": "5", "QBO_BATCH_REQUESTS_PER_MINUTE": "400"}
    lab = Lab(kind, invoices=invoices, students=invoices // 2, latency_ms=5, faults=faults, env=env, seed=seed)
    lab.sandbox.set_limits(batch_requests_per_minute=400)
    try:
        lab.finish(max_runs=15, batch_size=10)
        tally = measure(lab, "all_faults")
        tally.faults = dict(lab.sandbox.stats()["faults_injected"])
        return tally
    finally:
        lab.close()


@_timed
def two_runs_at_once(kind: str = "mariadb", *, invoices: int = 200) -> Tally:
    """Two `all` processes started together on one company: the lock lets one push."""
    lab = Lab(kind, invoices=invoices, students=invoices // 2, latency_ms=15)
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
def tokens_expire_mid_run(kind: str = "mariadb", *, invoices: int = 200) -> Tally:
    """Access tokens die while `all` runs; the run refreshes and carries on in one go."""
    lab = Lab(kind, invoices=invoices, students=invoices // 2, latency_ms=20,
              faults=Faults(seed=5, token_death_rate=0.05))
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


SCENARIOS = {f.__name__: f for f in (kill_at_every_step, random_kills, all_faults, two_runs_at_once,
                                     tokens_expire_mid_run)}


def main() -> int:
    """Run the chosen scenarios and print their counts; exit 1 if any is not clean."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mis", choices=("mariadb", "sqlite"), default="mariadb")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--kills", type=int, default=20, help="random_kills: how many kills")
    args = parser.parse_args()
    print(f"{'scenario':24} {'invoices':>8} {'runs':>5} {'kills':>5} {'dup':>4} {'lost':>5} {'stuck':>5} "
          f"{'wrong':>5} {'secs':>6}")
    clean = True
    for name in args.scenario or list(SCENARIOS):
        kwargs = {"kills": args.kills} if name == "random_kills" else {}
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
