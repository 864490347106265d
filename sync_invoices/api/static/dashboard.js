// sync_invoices dashboard: polls the API of the server that served this page; no library, no build step.
// Every value from the MIS is put into the page as text (never as HTML): a reason may hold anything.
"use strict";

(function () {
  const TOKEN_KEY = "sync_invoices.token";
  const API = "/api/v1";
  const IDLE_STATUS_MS = 10000;   // status when nothing runs (analyze is not free on a large MIS)
  const BUSY_STATUS_MS = 2000;    // status while a push runs: the counts move
  const RUN_MS = 1000;            // the active run's progress: one cheap row
  const HEALTH_MS = 60000;

  const $ = (id) => document.getElementById(id);
  const state = { busy: false, activeRun: null, lastStatus: 0, lastHealth: 0, counts: {}, timer: null };

  // -- small helpers ------------------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const number = (n) => (n === null || n === undefined ? "-" : Number(n).toLocaleString());
  const money = (s) => (s === null || s === undefined || s === "" ? "" :
    Number(s).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 }));
  function when(iso) {
    if (!iso) return "-";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
  function took(run) {
    if (!run.started) return "-";
    const end = run.finished ? new Date(run.finished) : new Date();
    const s = Math.max(0, Math.round((end - new Date(run.started)) / 1000));
    return s < 60 ? s + " s" : s < 3600 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h";
  }
  const COMMANDS = { batch: "Push a batch", all: "Push all", single: "Push one invoice", verify: "Verify" };
  const STATES = { running: "running", finished: "finished", interrupted: "interrupted", failed: "failed" };
  function setBar(id, percent) {
    const bar = $(id);
    const p = Math.max(0, Math.min(100, Number(percent) || 0));
    bar.querySelector(".fill").style.width = p + "%";
    bar.setAttribute("aria-valuenow", String(Math.round(p)));
  }

  // -- the API ------------------------------------------------------------------------------
  class Unauthorized extends Error {}
  async function call(method, path, body) {
    const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                           cache: "no-store" });
    } catch (err) {
      return { status: 0, success: false, data: null, message: "The sync_invoices server does not answer." };
    }
    let envelope = { success: false, data: null, message: "" };
    try { envelope = await response.json(); } catch (err) { envelope.message = "Unreadable answer (" + response.status + ")."; }
    if (response.status === 401 && path !== "/health") throw new Unauthorized(envelope.message);
    return { status: response.status, ...envelope };
  }

  // -- rendering ----------------------------------------------------------------------------
  function renderCounts(counts) {
    for (const key of ["synced", "not_synced", "failed", "in_progress", "total"]) {
      const dd = $("count-" + key);
      const text = number(counts[key]);
      if (state.counts[key] !== undefined && state.counts[key] !== counts[key]) {
        dd.parentElement.classList.remove("changed");
        void dd.offsetWidth;  // restart the flash
        dd.parentElement.classList.add("changed");
      }
      dd.textContent = text;
      const amounts = counts.amounts || {};
      $("amount-" + key).textContent = amounts[key] !== undefined ? money(amounts[key]) : "";
      state.counts[key] = counts[key];
    }
    $("progress-pct").textContent = (counts.progress_pct ?? 0) + "%";
    setBar("progress-bar", counts.progress_pct);
  }

  function renderRun(run) {
    state.activeRun = run && run.state === "running" ? run : null;
    $("run-none").hidden = !!state.activeRun;
    $("run-active").hidden = !state.activeRun;
    for (const b of document.querySelectorAll("button.push")) b.disabled = !!state.activeRun || state.busy;
    if (!state.activeRun) return;
    const p = run.progress || { done: run.done, total: run.total, percent: 0 };
    $("run-what").textContent = (COMMANDS[run.command] || run.command) + " - run " + run.id + ", started " +
      when(run.started) + " by " + (run.pushed_by || "?");
    setBar("run-bar", p.percent);
    $("run-progress").textContent = number(p.done) + " of " + (p.total === null || p.total === undefined ? "?" : number(p.total)) +
      " invoices done (" + (p.percent ?? 0) + "%)";
  }

  function renderFailures(failures) {
    const list = $("failures");
    list.replaceChildren();
    $("failures-count").textContent = failures.length ? String(failures.length) : "";
    $("failures-none").hidden = failures.length > 0;
    for (const f of failures) {
      const retry = f.quarantined ? "waiting for a fix in the MIS" :
        f.next_attempt_at ? "tried again after " + when(f.next_attempt_at) : "tried again on the next push";
      list.append(el("li", { "data-invoice": String(f.id) },
        el("div", { class: "head" }, el("strong", { text: "Invoice " + f.id }),
           f.code ? el("span", { class: "code", text: f.code }) : null, el("span", { class: "when", text: retry })),
        el("p", { class: "reason", text: f.reason || "No reason recorded." }),
        f.fix ? el("p", { class: "fix" }, el("b", { text: "How to fix: " }), f.fix) : null));
    }
  }

  function renderRuns(runs) {
    const body = $("runs").querySelector("tbody");
    body.replaceChildren();
    if (!runs.length) {
      body.append(el("tr", {}, el("td", { colspan: "8", class: "muted", text: "No push yet." })));
      return;
    }
    for (const r of runs) {
      const st = STATES[r.state] || r.state;
      body.append(el("tr", { "data-run": String(r.id) },
        el("td", { text: String(r.id) }), el("td", { class: "nowrap", text: COMMANDS[r.command] || r.command }),
        el("td", { class: "nowrap" }, el("span", { class: "state " + r.state, text: st }),
           r.state === "running" ? " " + number(r.done) + " of " + (r.total ?? "?") : null),
        el("td", { class: "num", text: r.state === "running" ? "-" : number(r.synced) }),
        el("td", { class: "num" + (r.failed ? " bad" : ""), text: r.state === "running" ? "-" : number(r.failed) }),
        el("td", { class: "nowrap", text: when(r.started) }), el("td", { class: "nowrap", text: took(r) }),
        el("td", { text: r.pushed_by || "" })));
    }
    const last = runs.find((r) => r.state !== "running");
    $("run-last").textContent = last ? "Last push: run " + last.id + " " + (STATES[last.state] || last.state) + " " +
      when(last.finished) + " - " + number(last.synced) + " synced, " + number(last.failed) + " failed." : "";
  }

  function renderVerify(v) {
    const box = $("verify");
    if (!v) return;
    box.replaceChildren();
    // A verify's own answer has counts (found) and remaining (left after a repair); the stored last one, remaining.
    const left = v.remaining && Object.keys(v.remaining).length ? v.remaining : (v.counts || {});
    const drift = Object.values(left).reduce((a, b) => a + b, 0);
    const checked = v.checked !== undefined && v.checked !== null ? number(v.checked) + " invoice(s), " : "";
    box.append(el("p", {},
      el("span", { class: drift ? "warn" : "good",
                   text: drift ? drift + " difference(s) between the MIS and QuickBooks." : "The books agree." }),
      " " + (v.finished ? "Checked " + when(v.finished) + ": " : "Just checked: ") + checked +
      (v.mode === "full" ? "every invoice." : "what changed since the last check.")));
    if (drift) {
      const kinds = el("ul", {});
      for (const [kind, n] of Object.entries(left)) if (n) kinds.append(el("li", { text: kind.replaceAll("_", " ") + ": " + n }));
      box.append(kinds);
    }
    const rows = (v.drift || []).slice(0, 50);
    if (rows.length) {
      const t = el("table", {}, el("thead", {}, el("tr", {}, ...["Invoice", "What", "Field", "MIS", "QuickBooks", "Done", "How to fix"]
        .map((h) => el("th", { text: h })))));
      const tb = el("tbody");
      for (const d of rows) {
        tb.append(el("tr", {}, el("td", { text: d.invoice_id ?? d.doc_number ?? "" }), el("td", { text: (d.kind || "").replaceAll("_", " ") }),
          el("td", { text: d.field || "" }), el("td", { text: d.mis ?? "" }), el("td", { text: d.qbo ?? "" }),
          el("td", { text: d.action || "" }), el("td", { text: d.fix || d.reason || "" })));
      }
      t.append(tb);
      box.append(el("div", { class: "table-wrap" }, t));
    }
    const totals = v.totals || [];
    if (totals.length) {
      const t = el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "Month" }), el("th", { class: "num", text: "MIS" }),
        el("th", { class: "num", text: "QuickBooks" }), el("th", { class: "num", text: "Difference" }))));
      const tb = el("tbody");
      for (const m of totals) {
        const off = Number(m.difference) !== 0;
        tb.append(el("tr", {}, el("td", { text: m.month }), el("td", { class: "num", text: money(m.mis) }),
          el("td", { class: "num", text: money(m.qbo) }), el("td", { class: "num" + (off ? " bad" : ""), text: money(m.difference) })));
      }
      t.append(tb);
      box.append(el("h3", { text: "Totals per month" }), el("div", { class: "table-wrap" }, t));
    }
  }

  function renderHealth(h) {
    const auth = $("auth");
    auth.className = "";
    if (!h.qbo_authorized) {
      auth.className = "error";
      auth.textContent = "QuickBooks is not connected: ask IT to run `sync_invoices auth`. Nothing can be pushed until then.";
    } else if (h.refresh_token_expires_at) {
      const days = Math.floor((new Date(h.refresh_token_expires_at) - new Date()) / 86400000);
      auth.textContent = "Connected. The QuickBooks authorization expires on " + when(h.refresh_token_expires_at) +
        " (in " + days + " day" + (days === 1 ? "" : "s") + ")." + (days < 14 ? " Ask IT to run `sync_invoices auth` before then." : "");
      if (days < 14) auth.className = "warn";
    } else {
      auth.textContent = "Connected (the expiry is known after the first push).";
    }
    $("mis-state").textContent = h.mis ? "The MIS database answers." : "The MIS database does not answer.";
    $("connection").textContent = h.ok ? "MIS and QuickBooks connected" : "Attention: " + (h.mis ? "QuickBooks" : "the MIS") + " is not available";
  }

  function showResult(title, answer, extra) {
    const box = $("result");
    box.className = "result" + (answer.success ? "" : " failed");
    box.replaceChildren(el("p", { class: "message", text: title + ": " + (answer.message || (answer.success ? "done" : "failed")) }));
    if (extra) box.append(extra);
  }

  function previewTable(invoices) {
    if (!invoices.length) return el("p", { class: "muted", text: "Nothing is waiting to be sent." });
    const t = el("table", {}, el("thead", {}, el("tr", {}, ...["Invoice", "Number", "Customer", "Date", "Amount", "Verdict"]
      .map((h) => el("th", { class: h === "Amount" ? "num" : "", text: h })))));
    const tb = el("tbody");
    for (const i of invoices) {
      const verdict = i.valid ? "ok" : i.problems.map((p) => p.message + (p.fix ? " Fix: " + p.fix : "")).join(" ");
      tb.append(el("tr", {}, el("td", { text: String(i.id) }), el("td", { text: i.doc_number || "" }),
        el("td", { text: i.customer || "-" }), el("td", { text: i.txn_date || "-" }),
        el("td", { class: "num", text: i.amount ? money(i.amount) : "-" }),
        el("td", { class: i.valid ? "" : "bad", text: verdict })));
    }
    t.append(tb);
    return el("div", { class: "table-wrap" }, t);
  }

  function analyzeDetails(a) {
    const reasons = Object.entries(a.preflight_failures || {});
    if (!reasons.length) return el("p", { class: "good", text: "No invoice waiting to be sent would fail the checks." });
    const list = el("ul", {});
    for (const [code, n] of reasons) list.append(el("li", { text: code.replaceAll("_", " ") + ": " + n + " invoice(s)" }));
    return el("div", {}, el("p", { text: "Invoices waiting that would fail the checks, by reason:" }), list);
  }

  function pushDetails(d) {
    if (!d || !d.errors || !d.errors.length) return null;
    const list = el("ul", {});
    for (const e of d.errors.slice(0, 5)) list.append(el("li", { text: e.error }));
    const more = d.errors.length > 5 ? "... and " + (d.errors.length - 5) + " more. " : "";
    return el("div", {}, el("p", { text: d.errors.length + " invoice(s) failed:" }), list,
      el("p", { class: "muted", text: more + "How to fix each one: see Failed invoices below." }));
  }

  // -- the loop -------------------------------------------------------------------------------
  async function refreshStatus() {
    const s = await call("GET", "/sync/status");
    state.lastStatus = Date.now();
    if (!s.success) { $("updated").textContent = s.message; return; }
    renderCounts(s.data.counts);
    renderRun(s.data.active_run);
    renderFailures(s.data.failures || []);
    renderRuns(s.data.runs || []);
    renderVerify(s.data.last_verify || null);
    $("updated").textContent = "Updated " + new Date().toLocaleTimeString() + (s.data.stuck && s.data.stuck.length ?
      " - " + s.data.stuck.length + " invoice(s) stuck in progress (the next push settles them)." : "");
  }

  async function refreshRun() {
    const r = await call("GET", "/sync/runs/" + state.activeRun.id);
    if (!r.success) return;
    renderRun(r.data);
    if (r.data.state !== "running") await refreshStatus();  // it just ended: new counts, failures, runs
  }

  async function refreshHealth() {
    state.lastHealth = Date.now();
    const h = await call("GET", "/health");
    if (h.data) renderHealth(h.data);
  }

  async function tick() {
    try {
      const now = Date.now();
      const busy = state.busy || !!state.activeRun;
      if (now - state.lastHealth >= HEALTH_MS) await refreshHealth();
      if (now - state.lastStatus >= (busy ? BUSY_STATUS_MS : IDLE_STATUS_MS)) await refreshStatus();
      else if (state.activeRun) await refreshRun();
    } catch (err) {
      if (err instanceof Unauthorized) { signOut("The token was refused; enter it again."); return; }
    }
    state.timer = setTimeout(tick, state.busy || state.activeRun ? RUN_MS : 2000);
  }

  async function act(action) {
    const buttons = document.querySelectorAll("#actions button");
    buttons.forEach((b) => { b.disabled = true; });
    state.busy = true;
    state.lastStatus = 0;  // see the run start as soon as it is recorded
    $("result").className = "result";
    $("result").replaceChildren(el("p", { class: "muted", text: "Working..." }));
    try {
      if (action === "analyze") {
        const a = await call("GET", "/sync/analyze");
        showResult("Analyze", a, a.success ? analyzeDetails(a.data) : null);
      } else if (action === "preview") {
        const p = await call("GET", "/sync/preview?limit=20");
        showResult("Preview", p, p.success ? previewTable(p.data.invoices) : null);
      } else if (action === "batch") {
        const size = Math.max(1, Math.min(10000, parseInt($("batch-size").value, 10) || 50));
        const b = await call("POST", "/sync/batch", { batch_size: size });
        showResult("Push a batch", b, b.success ? pushDetails(b.data) : null);
      } else if (action === "all") {
        const size = Math.max(1, Math.min(10000, parseInt($("batch-size").value, 10) || 50));
        const a = await call("POST", "/sync/all", { batch_size: size });
        showResult("Push all", a);
      } else if (action === "verify") {
        const repair = $("verify-repair").checked;
        if (repair && !window.confirm("Repair changes QuickBooks to match the MIS (it never deletes). Go on?")) {
          showResult("Verify", { success: true, message: "not started" });
          return;
        }
        const v = await call("POST", "/sync/verify", { full: $("verify-full").checked, repair });
        showResult("Verify", v);
        if (v.success) renderVerify(v.data);
      }
    } catch (err) {
      if (err instanceof Unauthorized) { signOut("The token was refused; enter it again."); return; }
      showResult(action, { success: false, message: String(err) });
    } finally {
      state.busy = false;
      buttons.forEach((b) => { b.disabled = false; });
      await refreshStatus().catch(() => {});
      if (action !== "analyze" && action !== "preview") await refreshHealth().catch(() => {});  // a push may renew the authorization
    }
  }

  // -- signing in and out -----------------------------------------------------------------
  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(state.timer);
    $("dashboard").hidden = true;
    $("sign-out").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").focus();
  }

  async function signIn() {
    try {
      await refreshStatus();
    } catch (err) {
      if (err instanceof Unauthorized) { signOut("That token was refused. Check it and try again."); return; }
      throw err;
    }
    $("login").hidden = true;
    $("dashboard").hidden = false;
    $("sign-out").hidden = false;
    await refreshHealth();
    clearTimeout(state.timer);
    state.timer = setTimeout(tick, 1000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      signIn();
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    for (const button of document.querySelectorAll("#actions button[data-action]")) {
      button.addEventListener("click", () => act(button.dataset.action));
    }
    if (sessionStorage.getItem(TOKEN_KEY)) signIn(); else signOut("");
  });
})();
