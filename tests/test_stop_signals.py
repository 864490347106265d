"""SIGTERM (systemd stop) and SIGINT (Ctrl-C at a terminal) stop a push gracefully: no new claims, the answers
already received applied, the run recorded as interrupted, exit 143 / 130, and the progress bar leaves the
terminal as it found it (rich hides the cursor while the bar runs). A second signal ends the process at once,
still safely: the next run settles what was in flight. The CLI runs under a real pseudo-terminal (`pty`)."""

from __future__ import annotations

import os
import pty
import re
import select as selectors
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from sync_invoices.demo_data import populate
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from sync_invoices.mis.bookkeeping import open_writes
from tests.helpers import CLI, assert_exactly_once, random_realm, run_cli, sandbox_env

HIDE, SHOW = b"\x1b[?25l", b"\x1b[?25h"
INVOICES = 240
FAST = dict(QBO_REQUEST_CAP_SECONDS="2", SYNC_SETTLE_MARGIN_SECONDS="1", SYNC_RUN_LEASE_SECONDS="2",
            SYNC_STOP_GRACE_SECONDS="5")


@pytest.fixture
def school(mis_url: str, make_sandbox, tmp_path: Path):
    """An MIS of 240 invoices and a sandbox slow enough (40 ms a request, 20 ms a batch item) to stop mid-run."""
    sandbox = make_sandbox(seed=3, realm_id=random_realm(), latency_ms=40, latency_per_batch_op_ms=20)
    items = [str(sandbox.create("Item", {"Name": f"Fee {n}", "Type": "Service"})["Id"]) for n in range(5)]
    mis = Mis.connect(mis_url)
    populate(mis, invoices=INVOICES, students=80, applicants=4, item_ids=items, bad_rows=False)
    yield mis, sandbox, sandbox_env(sandbox, mis_url, tmp_path, **FAST)
    mis.close()


def progress(output: bytes) -> int:
    """How many invoices the progress bar last showed as done."""
    shown = re.findall(rb"(\d+)/%d" % INVOICES, output)
    return int(shown[-1]) if shown else 0


def under_a_terminal(env: dict[str, str], keys: list[tuple[float, bytes]], *args: str) -> tuple[int, bytes]:
    """Run the CLI on a pseudo-terminal; once the progress bar shows 20 invoices done, type each key `delay`
    seconds after the previous one (b"\\x03" is Ctrl-C: the terminal sends SIGINT). Returns the exit code and
    all output."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own, the pty as its controlling terminal
        os.execve(CLI[0], CLI + list(args), env)
    output, typed, last = b"", 0, 0.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = selectors.select([fd], [], [], 0.02)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        if typed < len(keys) and HIDE in output and progress(output) >= 20:
            delay, key = keys[typed]
            if last == 0.0:
                last = time.monotonic()
            if time.monotonic() - last >= delay:
                os.write(fd, key)
                typed, last = typed + 1, time.monotonic()
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output


def last_run(mis: Mis):
    with mis.read() as conn:
        return conn.execute(select(t.runs).order_by(t.runs.c.id.desc()).limit(1)).one()


def answers_were_applied(mis: Mis, sandbox) -> None:
    """Every invoice QuickBooks holds is synced in the MIS, and no write waits for an answer: what was in flight
    when the signal came was answered within the grace period and applied."""
    in_qbo = {int(i["DocNumber"].removeprefix("MIS-")) for i in sandbox.entities("Invoice")}
    with mis.read() as conn:
        synced = set(conn.scalars(select(t.invoice.c.id).where(t.invoice.c.QuickBk_Status == 1)))
        stuck = list(conn.scalars(select(t.invoice.c.id).where(t.invoice.c.QuickBk_Status == 3)))
    assert in_qbo and in_qbo == synced, sorted(in_qbo ^ synced)
    assert stuck == [] and open_writes(mis) == []


def test_ctrl_c_stops_gracefully_and_leaves_the_terminal_clean(school) -> None:
    mis, sandbox, env = school
    code, output = under_a_terminal(env, [(0.0, b"\x03")], "all", "--batch-size", "20")
    assert code == 130, output[-2000:]
    assert b"Traceback" not in output
    tail = output.split(HIDE)[-1]
    assert SHOW in tail, "the cursor the progress bar hid is shown again"
    assert output.endswith(b"\n"), output[-200:]
    text = b" ".join(tail.split()).decode()
    assert "Stopped by SIGINT" in text and "answers already received were applied" in text, text
    run = last_run(mis)
    assert (run.state, run.exit_code) == ("interrupted", 130) and run.finished is not None
    answers_were_applied(mis, sandbox)
    remaining = INVOICES - len(sandbox.entities("Invoice"))
    assert remaining > 0, "the stop came mid-run"
    assert run_cli(env, "all").returncode == 0
    assert_exactly_once(mis, sandbox, list(range(1, INVOICES + 1)))


def test_a_second_ctrl_c_ends_it_at_once_and_the_terminal_is_still_clean(school) -> None:
    mis, sandbox, env = school
    started = time.monotonic()
    code, output = under_a_terminal(dict(env, SYNC_STOP_GRACE_SECONDS="60"), [(0.0, b"\x03"), (0.2, b"\x03")],
                                    "all", "--batch-size", "20")
    assert time.monotonic() - started < 30, "the second Ctrl-C does not wait for the 60 s grace"
    assert code == 130, output[-2000:]
    assert b"Traceback" not in output
    tail = output.split(HIDE)[-1]
    assert SHOW in tail and output.endswith(b"\n"), output[-300:]
    assert b"stopped at once" in tail
    time.sleep(3.5)  # QuickBooks' (shortened) cap on what may still be executing
    again = run_cli(env, "all")
    assert again.returncode == 0, again.stdout + again.stderr
    assert_exactly_once(mis, sandbox, list(range(1, INVOICES + 1)))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_without_a_terminal_stops_gracefully_with_its_exit_code(school, signum: int) -> None:
    """systemd sends SIGTERM to a service (cron output goes to a file): no bar, one line, exit 143 (130)."""
    mis, sandbox, env = school
    process = subprocess.Popen(CLI + ["all", "--batch-size", "20"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(sandbox.entities("Invoice")) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)  # mid-run: some invoices are in QuickBooks, most are not
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, out + err
    assert b"Traceback" not in out + err and b"\x1b[" not in out + err
    text = " ".join(err.decode().split())
    assert text.startswith(f"error: Stopped by {signal.Signals(signum).name}") and text.count("error:") == 1, text
    run = last_run(mis)
    assert (run.state, run.exit_code) == ("interrupted", 128 + signum)
    answers_were_applied(mis, sandbox)
    assert run_cli(env, "all").returncode == 0
    assert_exactly_once(mis, sandbox, list(range(1, INVOICES + 1)))
