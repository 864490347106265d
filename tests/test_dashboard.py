"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright, against `serve`'s app
on a real socket. A finance officer's path: open the page, enter the token once, push a batch, watch the
progress bar and the counts move, read a failed invoice's reason and fix. Screenshots are kept as artifacts
(the directory is printed; SYNC_TEST_ARTIFACTS overrides it). Under CI=true this test never skips."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import select, update

from sync_invoices.api.app import create_app
from sync_invoices.demo_data import populate
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from sync_invoices.settings import Secret
from tests.helpers import API_TOKEN, CHROMIUM, IN_CI, assert_exactly_once, free_port, random_realm, sandbox_settings

ARTIFACTS = Path(os.environ.get("SYNC_TEST_ARTIFACTS") or Path(__file__).resolve().parent.parent / "test-artifacts")
# As root in a container: no sandbox; and nothing that would reach out to Google's services.
HOSTILE = "<img src=x onerror=window.pwned=1>"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture
def browser() -> Iterator[object]:
    """Headless Chromium from Debian's package (a fresh profile per launch)."""
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing and CI=true: .ci/run installs Debian's chromium; the browser test must run.")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def served(make_sandbox, tmp_path: Path):
    """`serve`'s app under uvicorn on a free loopback port, a slow sandbox, and a MIS with bad rows."""
    import uvicorn
    sandbox = make_sandbox(seed=3, realm_id=random_realm(), latency_ms=500, latency_per_batch_op_ms=25)
    items = [str(sandbox.create("Item", {"Name": n, "Type": "Service"})["Id"])
             for n in ("Tuition", "Registration", "Library", "Examinations", "Accommodation")]
    url = f"sqlite:///{tmp_path / 'mis.sqlite'}"
    mis = Mis.connect(url)
    mis.create_mis()
    mis.ensure_tables()
    generated = populate(mis, invoices=90, students=45, applicants=5, item_ids=items)
    unknown = next(i for i, kind in generated.bad.items() if kind == "customer_not_found")
    with mis.write() as conn:  # MIS data reaches the page as text, never as HTML
        conn.execute(update(t.invoice).where(t.invoice.c.id == unknown).values(reg_no=HOSTILE))
    settings = sandbox_settings(sandbox, url, tmp_path, api_token=Secret(API_TOKEN))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)  # not the main thread: uvicorn leaves signals alone
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", mis, generated, sandbox
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        mis.close()


def test_a_finance_officer_pushes_a_batch_and_reads_the_failures(browser, served) -> None:
    from playwright.sync_api import expect
    base, mis, generated, sandbox = served
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {ARTIFACTS}")
    total = len(generated.invoice_ids)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(base) or r.url.startswith("data:") else elsewhere.append(r.url))
    page.goto(base + "/")

    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", "not-the-token-at-all")
    page.click("#sign-in")
    expect(page.locator("#login-error")).to_contain_text("refused")
    page.fill("#token", API_TOKEN)
    page.click("#sign-in")
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#count-total")).to_have_text(str(total))
    expect(page.locator("#count-synced")).to_have_text("0")
    expect(page.locator("#auth")).to_contain_text("Connected")
    assert page.evaluate("() => sessionStorage.getItem('sync_invoices.token')") == API_TOKEN

    page.reload()  # the token is entered once per tab
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()

    page.fill("#batch-size", "100")
    page.click("button[data-action=batch]")
    expect(page.locator("#run-active")).to_be_visible(timeout=20_000)
    progress = page.locator("#run-progress")
    expect(progress).to_have_text(re.compile(rf"\d+ of {total} invoices done"), timeout=10_000)
    expect(page.locator("#run-what")).to_contain_text("Push a batch")
    expect(page.locator("button[data-action=all]")).to_be_disabled()
    seen, shot = set(), False
    deadline = time.monotonic() + 60
    while page.locator("#run-active").is_visible() and time.monotonic() < deadline:
        value = page.locator("#run-bar").get_attribute("aria-valuenow")
        seen.add(value)
        if not shot and value not in (None, "0", "100"):
            page.screenshot(path=str(ARTIFACTS / "dashboard-running.png"), full_page=True)
            shot = True
        time.sleep(0.15)
    assert len(seen - {None}) >= 2, f"the progress bar moved while the run went on: {seen}"

    expect(page.locator("#result")).to_contain_text("Push a batch", timeout=60_000)
    expect(page.locator("#count-synced")).to_have_text(str(len(generated.good)), timeout=15_000)
    expect(page.locator("#count-failed")).to_have_text(str(len(generated.bad)))
    expect(page.locator("#count-not_synced")).to_have_text("0")
    expect(page.locator("#progress-pct")).not_to_have_text("0%")
    expect(page.locator("#failures-count")).to_have_text(str(len(generated.bad)))

    with mis.read() as conn:
        rows = {r.invoice_id: r for r in conn.execute(select(t.invoice_state))}
    zero = next(i for i, kind in generated.bad.items() if kind == "amount_not_positive")
    failure = page.locator(f"#failures li[data-invoice='{zero}']")
    expect(failure).to_contain_text(f"Invoice {zero}")
    expect(failure).to_contain_text(rows[zero].reason)
    expect(failure).to_contain_text("How to fix: " + rows[zero].fix)
    unknown = next(i for i, kind in generated.bad.items() if kind == "customer_not_found")
    expect(page.locator(f"#failures li[data-invoice='{unknown}']")).to_contain_text(HOSTILE)
    assert page.locator("#failures img").count() == 0 and page.evaluate("() => window.pwned") is None
    expect(page.locator("#runs tbody tr").first).to_contain_text("finished")
    expect(page.locator("#auth")).to_contain_text("authorization expires on")
    page.wait_for_timeout(1500)  # let the bars and the highlight of changed counts settle for the picture
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    page.click("button[data-action=preview]")
    expect(page.locator("#result")).to_contain_text("Preview")
    page.click("button[data-action=verify]")
    expect(page.locator("#verify")).to_contain_text("invoice(s)", timeout=30_000)
    expect(page.locator("#verify")).to_contain_text("Totals per month")
    page.screenshot(path=str(ARTIFACTS / "dashboard-verified.png"), full_page=True)

    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    small = phone.new_page()
    small.goto(base + "/")
    small.fill("#token", API_TOKEN)
    small.click("#sign-in")
    expect(small.locator("#count-synced")).to_have_text(str(len(generated.good)))
    width = small.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"nothing wider than a phone's screen ({width}px)"
    small.wait_for_timeout(1000)
    small.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)

    assert elsewhere == [], f"the page loads nothing from elsewhere: {elsewhere}"
    assert_exactly_once(mis, sandbox, generated.good)
    context.close()
    phone.close()


def test_the_dashboard_is_served_by_the_tool_alone(sandbox, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    import sync_invoices.api
    settings = sandbox_settings(sandbox, f"sqlite:///{tmp_path / 'mis.sqlite'}", tmp_path, api_token=Secret(API_TOKEN))
    with TestClient(create_app(settings)) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-cache"
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
            assert client.get(asset).status_code == 200, asset
    static = Path(sync_invoices.api.__file__).parent / "static"
    assert {p.name for p in static.iterdir()} >= {"index.html", "dashboard.css", "dashboard.js"}
    for path in static.iterdir():
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), f"{path.name} loads from elsewhere"
    script = (static / "dashboard.js").read_text()
    assert "innerHTML" not in script and "eval(" not in script, "MIS data goes into the page as text only"
    assert "sessionStorage" in script and "localStorage" not in script, "the token lives as long as the tab"
