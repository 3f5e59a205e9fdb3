// Rendering of one record: its facts, and its before and after images beside its changes.

const REDACTED = "[REDACTED]";

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) e.append(c);
  }
  return e;
}

// value renders one JSON value: redacted values as a marked "redacted", objects as JSON.
export function value(v) {
  if (v === REDACTED) {
    return el("span", { class: "redacted", title: "The value was redacted before it was stored" }, "redacted");
  }
  if (v === undefined) return el("span", { class: "absent" }, "absent");
  if (v === null) return el("span", { class: "null" }, "null");
  if (typeof v === "object") return el("pre", { class: "json" }, JSON.stringify(v, null, 2));
  return el("span", { class: "scalar" }, String(v));
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

// changedFields returns the fields that differ: the record's diff, else before against after.
export function changedFields(rec) {
  const out = new Set(Object.keys(rec.diff || {}));
  const b = rec.before || {};
  const a = rec.after || {};
  if (rec.before && rec.after) {
    for (const k of new Set([...Object.keys(b), ...Object.keys(a)])) {
      if (!same(b[k], a[k])) out.add(k);
    }
  }
  return out;
}

function image(obj, changed, label) {
  if (!obj || typeof obj !== "object") {
    return el("p", { class: "empty" }, label === "before" ? "No image before the change." : "No image after the change.");
  }
  const table = el("table", { class: "fields" });
  table.append(el("caption", { class: "sr-only" }, label === "before" ? "Fields before the change" : "Fields after the change"));
  const body = el("tbody");
  for (const k of Object.keys(obj).sort()) {
    const isChanged = changed.has(k);
    body.append(
      el("tr", { class: isChanged ? "changed" : undefined },
        el("th", { scope: "row" }, k, isChanged ? el("span", { class: "sr-only" }, " (changed)") : null,
          isChanged ? el("span", { class: "mark", "aria-hidden": "true" }, " ●") : null),
        el("td", {}, value(obj[k]))),
    );
  }
  table.append(body);
  return table;
}

function changes(rec, changed) {
  if (changed.size === 0) return el("p", { class: "empty" }, "No field changed.");
  const list = el("table", { class: "fields diff" });
  list.append(el("caption", { class: "sr-only" }, "Changed fields"));
  list.append(el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Field"), el("th", { scope: "col" }, "From"),
    el("th", { scope: "col" }, "To"))));
  const body = el("tbody");
  const diff = rec.diff || {};
  for (const k of [...changed].sort()) {
    const d = diff[k] || { from: (rec.before || {})[k], to: (rec.after || {})[k] };
    body.append(el("tr", { class: "changed" }, el("th", { scope: "row" }, k),
      el("td", { class: "from" }, value(d.from)), el("td", { class: "to" }, value(d.to))));
  }
  list.append(body);
  return list;
}

export function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? s : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, "");
}

export function actorOf(r) {
  return r.actor_email || r.actor_id || r.actor_type || "";
}

export function resourceOf(r) {
  if (!r.resource_type) return r.route || r.path || "";
  return r.resource_id ? r.resource_type + " " + r.resource_id : r.resource_type;
}

// render fills the detail dialog with rec.
export function render(rec, nodes) {
  nodes.title.textContent = rec.action + " · " + fmtTime(rec.occurred_at);
  const facts = [
    ["Record id", rec.id], ["Time (UTC)", fmtTime(rec.occurred_at)], ["Kind", rec.kind], ["Severity", rec.severity],
    ["Tenant", rec.tenant_id], ["Actor", [rec.actor_id, rec.actor_email, rec.actor_type].filter(Boolean).join(" · ")],
    ["Authenticated by", rec.actor_auth], ["Resource", resourceOf(rec)], ["Request id", rec.request_id],
    ["Request", [rec.method, rec.path].filter(Boolean).join(" ")], ["Route", rec.route],
    ["Status", rec.status], ["Duration", rec.duration_us != null ? (rec.duration_us / 1000).toFixed(1) + " ms" : ""],
    ["Client address", rec.ip], ["User agent", rec.user_agent],
  ];
  nodes.meta.replaceChildren();
  for (const [k, v] of facts) {
    if (v === undefined || v === null || v === "") continue;
    nodes.meta.append(el("dt", {}, k), el("dd", {}, String(v)));
  }
  const changed = changedFields(rec);
  nodes.before.replaceChildren(image(rec.before, changed, "before"));
  nodes.after.replaceChildren(image(rec.after, changed, "after"));
  nodes.diff.replaceChildren(changes(rec, changed));
  nodes.extra.replaceChildren();
  for (const [k, label] of [["metadata", "Metadata"], ["query", "Query"], ["request_body", "Request body"],
    ["response_body", "Response body"]]) {
    if (rec[k] === undefined) continue;
    nodes.extra.append(el("section", { class: "extra" }, el("h3", {}, label), value(rec[k])));
  }
}
