// Package ginaudit records every Gin request as an audit record and links it to the database
// changes the request made: one "http" row per request (method, route template, path, query,
// status, duration, client IP, user agent, request id, errors, actor, tenant), plus the rows the
// ORM integrations (gormaudit, entaudit) add through the request's context, all sharing the
// request id, actor, tenant and IP.
//
// The two-line use, with cfg from core.ConfigFromEnv:
//
//	w, _ := core.Open(ctx, cfg)
//	r.Use(ginaudit.Middleware(ginaudit.Options{Writer: w, Config: cfg}))
//
// Handlers pass c.Request.Context() to the ORM (db.WithContext(c.Request.Context())), so that
// their changes join the request's record.
//
// The actor comes from a verified JWT (Verifier: HMAC secret, RSA/ECDSA/Ed25519 public key, or a
// JWKS URL), from an application-supplied function, or from the application's own middleware
// (ActorKey). A token that fails verification never becomes an actor: the request is recorded as
// anonymous, with severity warning and the reason in the metadata, and it proceeds — the
// middleware audits, it does not authenticate.
package ginaudit
