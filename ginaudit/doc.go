// Package ginaudit records every Gin request as an audit record and links it to the database
// changes the request made: one "http" record per request (method, route template, path, query,
// status, duration, client IP, user agent, request id, errors, actor, tenant), plus the records
// the ORM integrations (gormaudit, entaudit) add through the request's context, all sharing the
// request id, actor, tenant and IP.
//
// The use, with cfg from core.ConfigFromEnv (ExampleMiddleware shows a whole service, with a
// shutdown that closes the writer after the server):
//
//	w, err := core.Open(ctx, cfg)
//	if err != nil {
//		return err
//	}
//	r.Use(gin.Recovery(), ginaudit.Middleware(ginaudit.Options{Writer: w, Config: cfg}))
//
// The middleware is httpaudit's for Gin: both are thin layers over one implementation (token
// verification, client address, tenant, bodies, failure policy, the record), so a request is
// recorded the same way by either, and a Verifier (which embeds httpaudit.Verifier) serves both.
// Gin's route template (c.FullPath()) fills the record's route, as the ServeMux pattern does for
// httpaudit.
//
// Handlers pass c.Request.Context() to the ORM (db.WithContext(c.Request.Context())), so that
// their changes join the request's record. Passing c itself records the same: the middleware
// stores the request's audit context under core.RequestContextKey, which core's lookups fall
// back to. c.Request.Context() is still the better choice, because database/sql may watch a
// *gin.Context after the handler returned, when gin already reuses it for another request.
//
// # Identity
//
// The actor comes from a verified JWT (Verifier: HMAC secret, RSA/ECDSA/Ed25519 public key, or a
// JWKS URL with key rotation), from Options.Identify, or from the application's own middleware
// (core.WithActor before the audit middleware, c.Set(ActorKey, ...) anywhere). A token that fails
// verification never becomes an actor: the request is recorded as anonymous, with severity
// warning and one reason in the metadata ("JWT refused: signature is invalid"), and it proceeds —
// the middleware audits, it does not authenticate; the application decides what an anonymous
// caller may do. The Verifier can be used on its own for that; its documentation lists what a
// token must be (strict base64url, no crit, string identity claims, exact actor types, JWKS
// signing keys only).
//
// In the handler's context, core.ActorFromContext reports ok only for an established actor: after
// a refused token ok is false, as without a token. core.AuthenticationFromContext tells the
// cases apart (core.AuthNone, core.AuthVerified, core.AuthRefused with the reason).
//
// Tenant ids follow core.ValidateTenantID wherever they come from (token claims refuse the token;
// the tenant header, core.WithTenant and TenantKey values are ignored and noted as tenant_error).
//
// # Client address
//
// Gin trusts every proxy by default, so c.ClientIP() returns whatever a client puts in
// X-Forwarded-For. The middleware records the socket's peer unless it is one of
// core.Config.TrustedProxies; TrustProxies applies the same list to the engine so that the
// application sees the same address.
//
// # Bodies
//
// With core.Config.CaptureRequestBody and CaptureResponseBody, the first MaxBodySizeBytes of
// JSON, form, multipart form, XML, YAML and text bodies are kept (a longer body is marked
// truncated) and redacted by the Writer when the record is stored, by what the bytes are rather
// than by their Content-Type (see core.Redactor.Body): a JSON body sent as a form is stored as
// redacted JSON, a multipart form as its fields and the sizes of its files. Handlers still read,
// and clients still receive, every byte. Binary bodies are recorded by content type and size
// only. A body that is not kept is never recorded as an empty one: other content types (event
// streams), streamed responses (Flush, Server-Sent Events), hijacked connections (WebSocket) and
// request bodies the handler never read are stored as {"content_type", "size", "omitted":
// "not_captured", "reason"}.
//
// A request body of unknown length (chunked) or sent after "100 Continue" is never read ahead of
// the handler: it is kept as the handler reads it, so a request refused unread gets no
// 100 Continue and a full-duplex exchange keeps flowing. When the handler stops before the end of
// such a body, the record holds the part it read and its metadata says request_body_partial.
//
// A body with a Content-Encoding other than identity (gzip, br, ...) is compressed, so it is
// recorded by size, never its bytes: {"content_type", "content_encoding", "size", "omitted":
// "encoded"}. Register response compression outside (before) the audit middleware,
// r.Use(gzipMiddleware, ginaudit.Middleware(...)), so that the audit sees the plain response;
// registered after it, response bodies are compressed when the audit sees them and are recorded
// by size only.
//
// # When the audit trail is unavailable
//
// By default (core.FailOpen) auditing never breaks a request: when the writer cannot accept a
// record (its queue and spool are full, it is closed, the database refuses it), the request is
// served and the record is dropped, counted and logged by the writer. Under core.FailClosed — the
// Writer's policy (core.Config.FailurePolicy, AUDIT_FAILURE_POLICY=closed), or a route's, set
// with FailurePolicy — the middleware reserves room for the request's record before the handler
// runs; when there is none the request is answered 503 Service Unavailable with Retry-After: 5
// and {"error": "audit trail unavailable", "reason": "..."}, its handler never runs, and the
// refusals are logged at most once a second. The ORM integrations reserve room for each change
// before it commits, so the records of a request that was served are all kept. Requests the
// middleware does not audit (ExcludePaths, SkipMethods) are never refused.
//
// HealthHandler serves the writer's condition (core.Health) for a readiness probe.
//
// # Reading the log
//
// MountAPI mounts the tenant-scoped read API on a router group: search with filters and signed
// keyset cursors, get by id, CSV and NDJSON export, stats, single and bulk ingest, retention
// cleanup, live streams over Server-Sent Events and WebSocket, and tenant administration,
// described by the OpenAPI document it serves at /openapi.yaml. Callers authenticate with the same
// JWTs the middleware verifies; the queries run through core/store.
//
//	st, err := store.New(pool, store.Options{CursorKey: key})
//	if err != nil {
//		return err
//	}
//	defer st.Close()
//	if err := ginaudit.MountAPI(r.Group("/api/v1"), st, ginaudit.APIOptions{Verifier: v, Writer: w}); err != nil {
//		return err
//	}
//
// examples/auditlog-service runs the same API as a standalone service.
package ginaudit
