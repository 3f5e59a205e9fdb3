package httpaudit_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/httpaudit"
	"github.com/auditkit/auditkit/schema"
)

// The middleware in a net/http application: the tables and the writer from one configuration,
// a ServeMux with Go 1.22 patterns (recorded as the route), handlers that pass r.Context() to the
// ORM, and a shutdown that loses no record.
func ExampleMiddleware() {
	// ctx is cancelled on Ctrl-C or SIGTERM.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := core.ConfigFromEnv() // AUDIT_DATABASE_URL, AUDIT_JWT_SECRET, AUDIT_TRUSTED_PROXIES, ...
	if err != nil {
		log.Fatal(err)
	}
	if err := schema.CreateTablesFor(ctx, cfg); err != nil {
		log.Fatal(err)
	}
	w, err := core.Open(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders/{id}/cancel", func(rw http.ResponseWriter, r *http.Request) {
		// db.WithContext(r.Context()).Save(&order) joins this request's record.
		rw.WriteHeader(http.StatusNoContent)
	})
	mux.Handle("GET /health/audit", httpaudit.HealthHandler(w))
	handler := httpaudit.Middleware(httpaudit.Options{Writer: w, Config: cfg})(mux)

	srv := &http.Server{Addr: ":8080", Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
			stop()
		}
	}()
	<-ctx.Done()

	// First the server, so that no request adds records any more, then the writer, which writes
	// what it accepted.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Print(err)
	}
	if err := w.Close(shutdownCtx); err != nil {
		log.Print(err)
	}
}

// The application's own session middleware, after the audit middleware, names the actor and the
// tenant of the request: they are recorded instead of what a token said.
func ExampleSetActor() {
	sessionUser := func(r *http.Request) (userID, tenantID string, ok bool) {
		c, err := r.Cookie("session")
		if err != nil {
			return "", "", false
		}
		return "user-" + c.Value, "tenant-1", true // a real application looks the session up
	}
	withSession := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if user, tenant, ok := sessionUser(r); ok {
				httpaudit.SetActor(r.Context(), core.Actor{ID: user, Type: core.ActorTenantUser, Auth: "session"})
				httpaudit.SetTenant(r.Context(), core.Tenant{ID: tenant})
			}
			next.ServeHTTP(w, r)
		})
	}

	ctx := context.Background()
	cfg, err := core.ConfigFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	w, err := core.Open(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := w.Close(ctx); err != nil {
			log.Print(err)
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /profile", func(rw http.ResponseWriter, r *http.Request) { fmt.Fprintln(rw, "profile") })
	handler := httpaudit.Middleware(httpaudit.Options{Writer: w, Config: cfg})(withSession(mux))
	srv := &http.Server{Addr: ":8080", Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Print(err)
	}
}
