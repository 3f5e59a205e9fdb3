// Calls to the audit-log API with the signed-in token.

const TOKEN_KEY = "auditkit.viewer.token";

export const apiBase = document.querySelector('meta[name="auditkit-api"]').content;
export const features = new Set(
  (document.querySelector('meta[name="auditkit-features"]')?.content || "").split(/\s+/).filter(Boolean),
);

// An error answered by the API: status, code and message from its JSON body.
export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// claims decodes the token's claims for display only; the API verifies the token.
export function claims(t = token()) {
  try {
    const part = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
    );
    return JSON.parse(json);
  } catch {
    return {};
  }
}

// who describes the signed-in caller from the token's claims.
export function who() {
  const c = claims();
  if (c.aud === "auditkit-viewer") {
    return {
      viewer: true, actor: c.sub, tenant: c.tid, admin: false,
      scopes: new Set((c.scope || "").split(" ")), exp: c.exp,
    };
  }
  return {
    viewer: false, actor: c.sub, tenant: c.tenant_id, admin: c.actor_type === "platform_admin",
    scopes: null, exp: c.exp,
  };
}

// can reports whether the caller may use a scope (tokens other than viewer tokens may use all).
export function can(scope) {
  const w = who();
  return !w.viewer || w.scopes.has(scope);
}

async function failure(res) {
  let code = "http_" + res.status;
  let message = res.status + " " + res.statusText;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new APIError(res.status, code, message);
}

// get fetches a JSON document of the API.
export async function get(path, params, signal) {
  const q = params && params.toString();
  const res = await fetch(apiBase + path + (q ? "?" + q : ""), {
    headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
    signal,
  });
  if (!res.ok) throw await failure(res);
  return res.json();
}

// download saves the answer of an export as a file named as the API names it.
export async function download(path, params) {
  const res = await fetch(apiBase + path + "?" + params.toString(), {
    headers: { Authorization: "Bearer " + token() },
  });
  if (!res.ok) throw await failure(res);
  const blob = await res.blob();
  const disp = res.headers.get("Content-Disposition") || "";
  const m = /filename="([^"]+)"/.exec(disp);
  const name = m ? m[1] : "audit-logs";
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return { name, bytes: blob.size };
}

// stream opens the live stream (Server-Sent Events) with the token in access_token, since
// EventSource cannot send headers.
export function stream(params) {
  const q = new URLSearchParams(params);
  q.set("access_token", token());
  return new EventSource(apiBase + "/logs/stream?" + q.toString());
}
