// The log viewer: a page of records at a time (keyset cursors), filters kept in the address,
// one record's images and changes, a request's records, a resource's history, live updates,
// exports and the chain's verification.

import * as api from "./api.js";
import { el, render, fmtTime, actorOf, resourceOf } from "./record.js";

const $ = (id) => document.getElementById(id);

// Query parameters of GET /logs that the filter form holds, and those the stream and the export
// accept besides the filters.
const FILTERS = ["from", "to", "actor_id", "actor_type", "actor_email", "action", "action_prefix", "kind", "severity",
  "resource_type", "resource_id", "request_id", "status_min", "status_max", "ip", "q", "changed", "include_meta"];
const LIVE_ROWS = 100; // live records kept above a page at most

const state = {
  key: "", // the view and parameters of the page shown
  route: null,
  cursors: [""], // cursors[i] reads page i
  page: 0,
  next: "",
  rows: 0, // records of the page shown
  stream: null,
  missed: 0, // live records not shown (another page or order)
  opener: null, // the row that opened the record
  loading: null,
};

// parseHash reads the view from the address: #/logs?filters, #/logs/<id>?filters,
// #/request/<id>?tenant_id=, #/history/<type>/<id>?tenant_id=.
function parseHash() {
  const h = location.hash.replace(/^#/, "");
  const [path, query] = h.split("?", 2);
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const r = { view: "logs", params, record: "" };
  if (parts[0] === "logs" && parts[1]) r.record = parts[1];
  if (parts[0] === "request" && parts[1]) {
    r.view = "request";
    r.request = parts[1];
    r.record = parts[2] || "";
  }
  if (parts[0] === "history" && parts[1] && parts[2]) {
    r.view = "history";
    r.type = parts[1];
    r.id = parts[2];
    r.record = parts[3] || "";
  }
  return r;
}

function listHash(r) {
  const q = r.params.toString();
  let p = "#/logs";
  if (r.view === "request") p = "#/request/" + encodeURIComponent(r.request);
  if (r.view === "history") p = "#/history/" + encodeURIComponent(r.type) + "/" + encodeURIComponent(r.id);
  return p + (q ? "?" + q : "");
}

function recordHash(r, id) {
  const base = listHash(r);
  const [p, q] = base.split("?", 2);
  const path = r.view === "logs" ? "#/logs/" + encodeURIComponent(id) : p + "/" + encodeURIComponent(id);
  return path + (q ? "?" + q : "");
}

// takeToken moves a token given in the address (#token=...) to the session and out of the
// address, so that it is neither bookmarked nor shown.
function takeToken() {
  const h = location.hash.replace(/^#/, "");
  const m = /(?:^|[?&])token=([^&]+)/.exec(h);
  if (!m) return;
  api.setToken(decodeURIComponent(m[1]));
  const rest = h.replace(m[0], "").replace(/^[?&]/, "").replace(/\?&/, "?").replace(/[?&]$/, "");
  history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : "#/logs"));
}

function setError(msg) {
  const e = $("error");
  e.hidden = !msg;
  e.textContent = msg || "";
}

function status(msg) {
  $("status").textContent = msg;
}

function describe(err) {
  if (err instanceof api.APIError) {
    if (err.status === 401) return "Your access token was refused (" + err.message + "). Sign in again.";
    if (err.status === 403 && err.code === "forbidden") return "You may not read this: " + err.message;
    return err.message + " (" + err.code + ")";
  }
  return "The request failed: " + err.message;
}

// ---- sign-in -------------------------------------------------------------------------------

function signedIn() {
  const w = api.who();
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  $("chain").hidden = false;
  const bits = ["Signed in as " + (w.actor || "unknown")];
  if (w.tenant) bits.push("tenant " + w.tenant);
  if (w.admin) bits.push("platform administrator");
  if (w.viewer) bits.push("viewer token (" + [...w.scopes].join(", ") + ")");
  if (w.exp) bits.push("until " + fmtTime(new Date(w.exp * 1000).toISOString()) + " UTC");
  $("who").textContent = bits.join(" · ");
  $("tenant-field").hidden = !w.admin;
  for (const [id, scope, what] of [["export-csv", "logs:export", "export"], ["export-ndjson", "logs:export", "export"],
    ["live", "logs:stream", "follow live records"], ["verify", "logs:verify", "verify the chain"]]) {
    const ok = api.can(scope);
    $(id).disabled = !ok;
    $(id).title = ok ? "" : "Your token may not " + what + " (it lacks " + scope + ")";
  }
}

function signOut() {
  stopLive();
  api.setToken("");
  state.key = "";
  $("rows").replaceChildren();
  $("app").hidden = true;
  $("signout").hidden = true;
  $("chain").hidden = true;
  $("who").textContent = "";
  $("signin").hidden = false;
  $("token-input").focus();
}

// ---- filters -------------------------------------------------------------------------------

function fillForm(params) {
  const f = $("filters");
  for (const input of f.querySelectorAll("input, select")) {
    if (input.type === "checkbox") {
      const vals = (params.get(input.name) || "").split(",");
      input.checked = vals.includes(input.value);
    } else {
      input.value = params.get(input.name) || (input.name === "limit" ? "50" : "");
    }
  }
}

function readForm() {
  const f = $("filters");
  const p = new URLSearchParams();
  const multi = {};
  for (const input of f.querySelectorAll("input, select")) {
    if (input.type === "checkbox") {
      if (input.checked) (multi[input.name] ||= []).push(input.value);
    } else if (input.value.trim() !== "" && !(input.name === "limit" && input.value === "50")) {
      p.set(input.name, input.value.trim());
    }
  }
  for (const [k, v] of Object.entries(multi)) p.set(k, v.join(","));
  return p;
}

// only keeps the parameters an operation accepts.
function only(params, names) {
  const out = new URLSearchParams();
  for (const [k, v] of params) if (names.includes(k)) out.append(k, v);
  return out;
}

// ---- the list ------------------------------------------------------------------------------

function row(r, live) {
  const tr = el("tr", { "data-id": r.id, tabindex: "-1", class: live ? "live" : undefined },
    el("td", { class: "time" }, fmtTime(r.occurred_at)),
    el("td", {}, el("span", { class: "action" }, r.action)),
    el("td", {}, actorOf(r)),
    el("td", {}, resourceOf(r)),
    el("td", {}, r.kind),
    el("td", {}, el("span", { class: "sev sev-" + r.severity }, r.severity)),
    el("td", {}, r.status != null ? String(r.status) : ""),
    el("td", {}, r.request_id ? el("button", { type: "button", class: "link req", "data-request": r.request_id,
      tabindex: "-1", "aria-label": "Records of request " + r.request_id }, r.request_id.slice(0, 12)) : ""));
  return tr;
}

function focusRow(tr) {
  for (const r of $("rows").querySelectorAll('tr[tabindex="0"]')) r.tabIndex = -1;
  if (!tr) return;
  tr.tabIndex = 0;
  tr.focus();
}

function requestParams(r) {
  if (r.view === "request") {
    const p = only(r.params, ["tenant_id", "include_meta"]);
    p.set("request_id", r.request);
    p.set("sort", "oldest");
    p.set("limit", "200");
    return p;
  }
  if (r.view === "history") return only(r.params, ["tenant_id", "limit", "sort"]);
  return only(r.params, [...FILTERS, "sort", "limit", "tenant_id"]);
}

async function load() {
  const r = state.route;
  const params = requestParams(r);
  const cursor = state.cursors[state.page];
  if (cursor) params.set("cursor", cursor);
  const path = r.view === "history"
    ? "/resources/" + encodeURIComponent(r.type) + "/" + encodeURIComponent(r.id) + "/history"
    : "/logs";
  state.loading?.abort();
  const ctl = new AbortController();
  state.loading = ctl;
  setError("");
  status("Loading…");
  $("records").setAttribute("aria-busy", "true");
  let page;
  try {
    page = await api.get(path, params, ctl.signal);
  } catch (err) {
    if (err.name === "AbortError") return;
    $("rows").replaceChildren();
    state.rows = 0;
    state.next = "";
    pager();
    status("");
    setError(describe(err));
    $("records").setAttribute("aria-busy", "false");
    return;
  }
  const logs = page.logs || page.history || [];
  $("rows").replaceChildren(...logs.map((x) => row(x)));
  state.rows = logs.length;
  state.next = page.next_cursor || "";
  state.missed = 0;
  $("records").setAttribute("aria-busy", "false");
  const first = $("rows").querySelector("tr");
  if (first) first.tabIndex = 0;
  pager();
  if (r.view === "request") summarizeRequest(logs);
  status(logs.length === 0 ? "No records match." : logs.length + (logs.length === 1 ? " record" : " records") +
    " on page " + (state.page + 1) + (state.next ? "; more on the next page." : "."));
}

function pager() {
  $("prev").disabled = state.page === 0;
  $("next").disabled = !state.next;
  $("page-no").textContent = "Page " + (state.page + 1);
}

function turn(delta) {
  if (delta > 0 && state.next) {
    state.cursors[state.page + 1] = state.next;
    state.page++;
  } else if (delta < 0 && state.page > 0) {
    state.page--;
  } else {
    return;
  }
  load().then(() => focusRow($("rows").querySelector("tr")));
}

function summarizeRequest(logs) {
  const box = $("request-summary");
  const http = logs.find((x) => x.kind === "http");
  box.hidden = false;
  if (!http) {
    box.replaceChildren(el("p", {}, logs.length + " records share this request id; none is its http record."));
    return;
  }
  box.replaceChildren(el("p", {}, el("strong", {}, [http.method, http.path].filter(Boolean).join(" ")),
    " answered " + (http.status ?? "?") + " in " + (http.duration_us != null ? (http.duration_us / 1000).toFixed(1) + " ms" : "?") +
    " for " + (actorOf(http) || "an anonymous caller") + "; " + (logs.length - 1) + " records under it."));
}

// ---- one record ----------------------------------------------------------------------------

async function openRecord(id) {
  const r = state.route;
  setError("");
  let rec;
  try {
    rec = await api.get("/logs/" + encodeURIComponent(id), only(r.params, ["tenant_id"]));
  } catch (err) {
    setError(describe(err));
    return;
  }
  if (state.route !== r) return;
  render(rec, { title: $("detail-title"), meta: $("detail-meta"), before: $("pane-before"), after: $("pane-after"),
    diff: $("pane-diff"), extra: $("detail-extra") });
  const req = $("open-request");
  req.disabled = !rec.request_id;
  req.dataset.request = rec.request_id || "";
  req.dataset.tenant = rec.tenant_id || "";
  const hist = $("open-history");
  const canHistory = api.features.has("history") && rec.resource_type && rec.resource_id;
  hist.disabled = !canHistory;
  hist.textContent = api.features.has("history") ? "Resource history" : "Resource history (not available on this service)";
  hist.dataset.type = rec.resource_type || "";
  hist.dataset.id = rec.resource_id || "";
  hist.dataset.tenant = rec.tenant_id || "";
  const d = $("detail");
  if (!d.open) d.showModal();
  $("close").focus();
}

function closeRecord() {
  const d = $("detail");
  if (d.open) d.close();
}

function onDetailClosed() {
  const r = state.route;
  if (r && r.record) {
    const id = r.record;
    // Closed where it was opened (not by a link to another view): back to the list it came from.
    if (location.hash === recordHash(r, id)) history.replaceState(null, "", listHash(r));
    r.record = "";
    const tr = [...$("rows").querySelectorAll("tr")].find((x) => x.dataset.id === id);
    focusRow(tr || state.opener);
  }
}

// ---- live records --------------------------------------------------------------------------

function startLive() {
  stopLive();
  const r = state.route;
  const params = only(r.view === "logs" ? r.params : requestParams(r), [...FILTERS, "tenant_id"]);
  const es = api.stream(params);
  state.stream = es;
  $("live").setAttribute("aria-pressed", "true");
  $("live").textContent = "Stop following";
  status("Following new records live.");
  es.addEventListener("log", (ev) => {
    const rec = JSON.parse(ev.data);
    const atTop = state.page === 0 && (r.params.get("sort") || "") === "" && state.route === r;
    if (!atTop) {
      state.missed++;
      status(state.missed + " new records arrived; go to the first page, newest first, to see them.");
      return;
    }
    const tbody = $("rows");
    tbody.prepend(row(rec, true));
    while (tbody.rows.length > state.rows + LIVE_ROWS) tbody.lastElementChild.remove();
    if (!tbody.querySelector('tr[tabindex="0"]')) tbody.firstElementChild.tabIndex = 0;
    status("New record: " + rec.action + " by " + (actorOf(rec) || "unknown") + ".");
  });
  es.addEventListener("error", (ev) => {
    if (ev.data) {
      // The stream ended and says why.
      let msg = "The live stream ended.";
      try {
        const e = JSON.parse(ev.data);
        msg = "The live stream ended: " + e.message;
      } catch {
        // keep the generic message
      }
      stopLive();
      setError(msg);
      return;
    }
    if (es.readyState === EventSource.CLOSED) {
      stopLive();
      setError("The live stream could not be opened or was closed.");
    }
  });
}

function stopLive() {
  if (state.stream) state.stream.close();
  state.stream = null;
  $("live").setAttribute("aria-pressed", "false");
  $("live").textContent = "Follow live";
}

// ---- export and verification ---------------------------------------------------------------

async function exportAs(format) {
  const r = state.route;
  const params = only(r.view === "logs" ? r.params : requestParams(r), [...FILTERS, "sort", "tenant_id"]);
  params.set("format", format);
  setError("");
  status("Exporting…");
  try {
    const res = await api.download("/logs/export", params);
    status("Exported to " + res.name + " (" + res.bytes + " bytes).");
  } catch (err) {
    status("");
    setError(describe(err));
  }
}

async function verify() {
  const text = $("chain-text");
  text.textContent = "Verifying the chain…";
  $("chain").className = "chain";
  try {
    const rep = await api.get("/logs/verify", only(state.route.params, ["tenant_id"]));
    if (rep.ok) {
      text.textContent = "Chain intact: " + rep.rows + " records verified" +
        (rep.checkpoints ? ", " + rep.checkpoints + " signed checkpoints" : "") + ".";
      $("chain").className = "chain ok";
    } else {
      const p = rep.problems[0];
      text.textContent = "Chain broken: " + (rep.problems.length + (rep.more_problems || 0)) + " problems" +
        (p ? "; first at record " + p.seq + ": " + p.reason : "") + ".";
      $("chain").className = "chain bad";
    }
  } catch (err) {
    text.textContent = "Chain not verified: " + describe(err);
    $("chain").className = "chain bad";
  }
}

// ---- routing -------------------------------------------------------------------------------

async function route() {
  takeToken();
  if (!api.token()) {
    signOut();
    return;
  }
  signedIn();
  const r = parseHash();
  const key = listHash(r);
  const reload = key !== state.key;
  state.route = r;
  if (reload) {
    state.key = key;
    state.cursors = [""];
    state.page = 0;
    fillForm(r.params);
    const title = $("view-title");
    title.hidden = r.view === "logs";
    $("request-summary").hidden = true;
    $("filters").hidden = r.view !== "logs";
    if (r.view === "request") $("view-heading").textContent = "Records of request " + r.request;
    if (r.view === "history") $("view-heading").textContent = "History of " + r.type + " " + r.id;
    const wasLive = !!state.stream;
    await load();
    if (wasLive) startLive();
  }
  if (r.record) openRecord(r.record);
  else closeRecord();
}

function init() {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token-input").value.trim();
    if (!t) return;
    api.setToken(t);
    $("token-input").value = "";
    state.key = "";
    route();
  });
  $("signout").addEventListener("click", signOut);
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = "#/logs" + (readForm().toString() ? "?" + readForm().toString() : "");
  });
  $("reset").addEventListener("click", () => {
    const keep = only(state.route.params, ["tenant_id"]).toString();
    location.hash = "#/logs" + (keep ? "?" + keep : "");
  });
  $("back").addEventListener("click", () => {
    const keep = only(state.route.params, ["tenant_id"]).toString();
    location.hash = "#/logs" + (keep ? "?" + keep : "");
  });
  $("prev").addEventListener("click", () => turn(-1));
  $("next").addEventListener("click", () => turn(1));
  $("live").addEventListener("click", () => (state.stream ? stopLive() : startLive()));
  $("export-csv").addEventListener("click", () => exportAs("csv"));
  $("export-ndjson").addEventListener("click", () => exportAs("ndjson"));
  $("verify").addEventListener("click", verify);
  $("close").addEventListener("click", closeRecord);
  $("detail").addEventListener("close", onDetailClosed);
  $("open-request").addEventListener("click", (ev) => {
    const b = ev.currentTarget;
    const q = only(state.route.params, ["tenant_id"]);
    closeRecord();
    location.hash = "#/request/" + encodeURIComponent(b.dataset.request) + (q.toString() ? "?" + q : "");
  });
  $("open-history").addEventListener("click", (ev) => {
    const b = ev.currentTarget;
    const q = only(state.route.params, ["tenant_id"]);
    closeRecord();
    location.hash = "#/history/" + encodeURIComponent(b.dataset.type) + "/" + encodeURIComponent(b.dataset.id) +
      (q.toString() ? "?" + q : "");
  });

  const rows = $("rows");
  const open = (tr) => {
    state.opener = tr;
    location.hash = recordHash(state.route, tr.dataset.id);
  };
  rows.addEventListener("click", (ev) => {
    const req = ev.target.closest("button.req");
    if (req) {
      ev.stopPropagation();
      const q = only(state.route.params, ["tenant_id"]);
      location.hash = "#/request/" + encodeURIComponent(req.dataset.request) + (q.toString() ? "?" + q : "");
      return;
    }
    const tr = ev.target.closest("tr");
    if (tr) {
      focusRow(tr);
      open(tr);
    }
  });
  rows.addEventListener("keydown", (ev) => {
    const tr = ev.target.closest("tr");
    if (!tr) return;
    let next = null;
    switch (ev.key) {
      case "ArrowDown": next = tr.nextElementSibling; break;
      case "ArrowUp": next = tr.previousElementSibling; break;
      case "Home": next = rows.firstElementChild; break;
      case "End": next = rows.lastElementChild; break;
      case "Enter": open(tr); ev.preventDefault(); return;
      case "PageDown": turn(1); ev.preventDefault(); return;
      case "PageUp": turn(-1); ev.preventDefault(); return;
      default: return;
    }
    ev.preventDefault();
    if (next) focusRow(next);
  });
  window.addEventListener("hashchange", route);
  route();
}

init();
