package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/auditkit/auditkit/core"
)

// A service whose audit records must survive a crash of the process and an outage of the audit
// database keeps them in a spool on local disk; one operation that must never happen unaudited
// refuses to run when its record cannot be accepted; /healthz reports the writer's state.
func ExampleOpen_durable() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := core.ConfigFromEnv() // AUDIT_DATABASE_URL, AUDIT_SPOOL_DIR, AUDIT_FAILURE_POLICY, ...
	if err != nil {
		log.Fatal(err)
	}
	if cfg.Spool.Dir == "" {
		cfg.Spool.Dir = "/var/lib/myapp/audit-spool" // one directory per process
	}
	w, err := core.Open(ctx, cfg) // replays what an earlier run left in the spool
	if err != nil {
		log.Fatal(err) // errors.Is(err, core.ErrSchemaNotReady): the message names the fix
	}

	http.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) {
		h := w.Health()
		if !h.OK() {
			rw.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(rw).Encode(map[string]any{"audit": h.State.String(), "reason": h.Reason})
	})
	http.HandleFunc("/payouts", func(rw http.ResponseWriter, r *http.Request) {
		// This one operation is refused rather than done unaudited.
		rctx := core.WithFailurePolicy(r.Context(), core.FailClosed)
		if _, err := core.Log(rctx, w, core.Entry{Action: "payout.sent", ResourceType: "payouts", ResourceID: "po_1"}); err != nil {
			if errors.Is(err, core.ErrAuditUnavailable) {
				http.Error(rw, "try again later", http.StatusServiceUnavailable)
				return
			}
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		// ... send the payout ...
	})
	srv := &http.Server{Addr: ":8080", ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
			stop()
		}
	}()
	<-ctx.Done()

	// A fresh context after the signal: Close writes what it can in 10 s, and what it cannot
	// stays in the spool for the next start.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Print(err)
	}
	if err := w.Close(shutdownCtx); err != nil {
		log.Print(err)
	}
}
