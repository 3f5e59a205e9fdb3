// Package httpaudit records every net/http request as an audit record and links it to the
// database changes the request made: one "http" record per request (method, route template,
// path, query, status, duration, client IP, user agent, request id, actor, tenant), plus the
// records the ORM integrations (gormaudit, entaudit) add through the request's context, all
// sharing the request id, actor, tenant and IP.
//
// Middleware is a standard func(http.Handler) http.Handler, so it works with http.ServeMux and
// with any router built on net/http. ginaudit is the same middleware for Gin: both share one
// implementation (token verification, client address, tenant, bodies, failure policy), and a
// Verifier serves both.
//
//	w, err := core.Open(ctx, cfg)
//	if err != nil {
//		return err
//	}
//	mux := http.NewServeMux()
//	mux.HandleFunc("POST /orders", createOrder) // db.WithContext(r.Context()) joins the record
//	handler := httpaudit.Middleware(httpaudit.Options{Writer: w, Config: cfg})(mux)
//
// # Routers
//
// The route template is r.Pattern, which http.ServeMux (Go 1.22 patterns such as
// "GET /orders/{id}") sets when the middleware wraps the mux. Routers that keep the template
// elsewhere report it with Options.Route or SetRoute:
//
//	// chi: register the middleware with the router's Use; chi fills its route context while routing.
//	r := chi.NewRouter()
//	r.Use(httpaudit.Middleware(httpaudit.Options{Writer: w, Config: cfg,
//		Route: func(r *http.Request) string { return chi.RouteContext(r.Context()).RoutePattern() }}))
//
//	// gorilla/mux: middleware registered with Use runs after the route matched.
//	r := mux.NewRouter()
//	r.Use(httpaudit.Middleware(httpaudit.Options{Writer: w, Config: cfg,
//		Route: func(r *http.Request) string {
//			if rt := mux.CurrentRoute(r); rt != nil {
//				tpl, _ := rt.GetPathTemplate()
//				return tpl
//			}
//			return ""
//		}}))
//
//	// echo: through its net/http adapter, then the route from echo's context.
//	e := echo.New()
//	e.Use(echo.WrapMiddleware(httpaudit.Middleware(httpaudit.Options{Writer: w, Config: cfg})))
//	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
//		return func(c echo.Context) error {
//			httpaudit.SetRoute(c.Request().Context(), c.Path())
//			return next(c)
//		}
//	})
//
// # Identity
//
// The actor comes from a verified JWT (Verifier: HMAC secret, RSA/ECDSA/Ed25519 public key, or a
// JWKS URL with key rotation), from Options.Identify, or from the application (core.WithActor
// before the middleware, SetActor while the handler runs). A token that fails verification never
// becomes an actor: the request is recorded as anonymous, with severity warning and one reason in
// the metadata, and it proceeds — the middleware audits, it does not authenticate. In the
// handler's context core.AuthenticationFromContext tells no credentials, verified and refused
// apart; core.ActorFromContext reports ok only for an established actor.
//
// The tenant comes from the application (core.WithTenant before the middleware, SetTenant), the
// token's tenant claims, or Config.TenantHeader, and always passes core.ValidateTenant.
//
// # Client address
//
// The socket's peer address is recorded unless it is one of core.Config.TrustedProxies; then
// X-Forwarded-For is walked from the right to the first address that is not a trusted proxy.
//
// # Bodies
//
// With core.Config.CaptureRequestBody and CaptureResponseBody, the first MaxBodySizeBytes of
// JSON, form, multipart form, XML, YAML and text bodies are kept and redacted by the Writer; the
// handler still reads, and the client still receives, every byte. Binary and compressed bodies
// are recorded by content type and size; streamed responses (Flush, Server-Sent Events), hijacked
// connections and request bodies the handler never read are recorded as not captured, with the
// reason. A body of unknown length or sent after "100 Continue" is captured as the handler reads
// it, never ahead of it.
//
// # When the audit trail is unavailable
//
// By default (core.FailOpen) auditing never breaks a request: a record the writer cannot accept
// is dropped, counted and logged by the writer. Under core.FailClosed (the Writer's policy, or a
// handler's, set with FailurePolicy) the middleware reserves room for the request's record before
// the handler runs; when there is none the request is answered 503 Service Unavailable with
// Retry-After: 5 and its handler never runs. HealthHandler serves the writer's condition for a
// readiness probe.
package httpaudit
