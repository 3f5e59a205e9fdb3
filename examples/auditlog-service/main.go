// Command auditlog-service runs the auditkit audit-log API (ginaudit.MountAPI) as a standalone,
// multi-tenant service: search, export, statistics, live streams, ingest for other services,
// retention and the tenants registry, over the audit_logs table that applications fill through
// auditkit's writers.
//
// It is configured by environment variables. core's AUDIT_* variables give the database
// (AUDIT_DATABASE_URL, required), the schema (AUDIT_DB_SCHEMA), token verification
// (AUDIT_JWT_SECRET, AUDIT_JWT_PUBLIC_KEY or AUDIT_JWT_JWKS_URL, required; AUDIT_JWT_ISSUER,
// AUDIT_JWT_AUDIENCE, AUDIT_JWT_CLAIM_MAP, ...), redaction and the writer. The service's own
// settings use the AUDITLOG_ prefix:
//
//	AUDITLOG_LISTEN_ADDR         listen address (default :8080)
//	AUDITLOG_BASE_PATH           where the API is mounted (default /api/v1)
//	AUDITLOG_CURSOR_KEY          page-cursor signing key, at least 32 bytes; share it between replicas
//	                             (default: random per process, so cursors end with a restart)
//	AUDITLOG_RATE_LIMIT          requests per second per tenant (default 20; "off" disables)
//	AUDITLOG_RATE_BURST          token-bucket size (default twice the rate)
//	AUDITLOG_MAX_PAGE_SIZE       largest page of GET /logs (default 1000)
//	AUDITLOG_MAX_BULK_RECORDS    records per POST /logs/bulk (default 1000)
//	AUDITLOG_MAX_BODY_BYTES      request body limit (default 10485760)
//	AUDITLOG_IDEMPOTENCY_WINDOW  how long Idempotency-Keys are remembered (default 24h)
//	AUDITLOG_RETENTION           default retention of the background policy (2160h, 90d); unset applies
//	                             only tenants' own retention_days; "off" stops the background job
//	AUDITLOG_RETENTION_INTERVAL  time between retention passes (default 1h)
//	AUDITLOG_MIN_CLEANUP_AGE     DELETE /logs/cleanup never deletes younger records (default 24h)
//	AUDITLOG_MAX_STREAMS         live streams open at once per tenant (default 10)
//	AUDITLOG_WEBSOCKET_ORIGINS   other origins (host patterns) allowed to open WebSocket streams
//	AUDITLOG_WRITE_TIMEOUT       how long one export chunk or stream event may wait for a client
//	                             that stops reading before it is cut off (default 30s)
//	AUDITLOG_MAX_EXPORTS         exports running at once per tenant (default 2)
//	AUDITLOG_MAX_EXPORTS_TOTAL   exports running at once in all (default half the connection pool)
//	AUDITLOG_AUDIT_REQUESTS      record every API request as an http record (default true)
//	AUDITLOG_SHUTDOWN_TIMEOUT    how long a shutdown waits for requests and the writer (default 30s)
//	AUDITLOG_ROW_LEVEL_SECURITY  a reader role: the read API runs as it, under PostgreSQL row-level
//	                             security (default off; see below)
//	AUDITLOG_VIEWER_TOKEN_KEY    signs viewer tokens, at least 32 bytes: short-lived, read-only tokens of
//	                             one tenant that POST <base>/viewer/tokens mints for an application's
//	                             customers (default unset: viewer tokens are refused)
//	AUDITLOG_STREAM_SOURCE       what live streams (GET <base>/logs/stream) follow: postgres, the
//	                             database's notifications of new rows (default), or nats, the NATS
//	                             JetStream subjects applications publish to (natsaudit.Sink) and
//	                             auditkit ingest reads: records arrive when published, before they
//	                             are stored; streams with a full-text search (q) are refused
//	AUDITLOG_NATS_URL            with nats: the server URL(s) (default NATS_URL, else nats://127.0.0.1:4222)
//	AUDITLOG_NATS_STREAM         with nats: the stream, as auditkit ingest -stream (default AUDIT)
//	AUDITLOG_NATS_SUBJECT_PREFIX with nats: the subject prefix, as auditkit ingest -subject-prefix
//	                             (default audit)
//
// The log viewer, a web page that reads the API with the token it is given (an API token or a
// viewer token, in the address as #token=... or pasted into its form), is served at / and at
// <base>/viewer/.
//
// GET /metrics serves the writer's and the API's metrics (otelaudit, ginaudit.APIMetrics) for
// Prometheus; GET /healthz answers 200 while the process runs, GET /readyz reports the audit
// writer's condition (ginaudit.HealthHandler: 200 healthy or degraded, 503 failing).
//
// On start it applies the schema migrations, then serves until SIGINT or SIGTERM. GET /health
// answers 200 while the database does and the audit writer is not failing, with the writer's
// condition under "audit_writer" (ginaudit.WriterHealth: healthy, degraded or failing, queue and
// spool use, records dropped); 503 otherwise.
//
// With AUDITLOG_ROW_LEVEL_SECURITY the database itself keeps every API call to its tenant, as
// defence in depth behind the API's own checks. The service, connected as AUDIT_DATABASE_URL's
// user (the tables' owner, since it migrates them), grants the role what the read API needs,
// applies schema.EnableRowLevelSecurity for it, and opens a second pool whose connections take
// the role (the user must be a member: CREATE ROLE auditlog_reader NOLOGIN; GRANT auditlog_reader
// TO <user>). The read API's statements then run as the role with the tenant set in each
// transaction (store.Options.RowLevelSecurity); the service's own audit records keep the owner's
// pool and its COPY, which row-level security does not slow. The role must not be the owner, a
// superuser or have BYPASSRLS: the service refuses to start otherwise.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/natsaudit"
	"github.com/auditkit/auditkit/schema"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(ctx, os.Environ(), logger, nil); err != nil {
		logger.Error("auditlog-service stopped", "error", err)
		os.Exit(1)
	}
}

// run serves until ctx ends. ready, when set, is called with the listening address.
func run(ctx context.Context, environ []string, logger *slog.Logger, ready func(addr string)) error {
	cfg, err := loadConfig(environ, logger)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	pool, err := pgxpool.New(ctx, cfg.Audit.DatabaseURL)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	res, err := schema.Migrate(mctx, pool, schema.WithSchema(cfg.Audit.Schema))
	cancel()
	if err != nil {
		return fmt.Errorf("migrating schema %s: %w", cfg.Audit.Schema, err)
	}
	logger.Info("auditlog-service: schema ready", "schema", res.Schema, "applied", res.Applied, "version", res.Current)

	readPool := pool
	if cfg.ReaderRole != "" {
		if readPool, err = readerPool(ctx, pool, cfg.Audit.DatabaseURL, res.Schema, cfg.ReaderRole); err != nil {
			return fmt.Errorf("%s: %w", envRowLevelSecurity, err)
		}
		defer readPool.Close()
		logger.Info("auditlog-service: row-level security on", "reader_role", cfg.ReaderRole)
	}

	// AUDIT_SIGNING_KEY signs retention's truncation anchors and is published for verifiers;
	// AUDIT_PII_MASTER_KEY decrypts personal values on read and encrypts ingested ones.
	signingKey, err := cfg.Audit.ChainSigningKey()
	if err != nil {
		return err
	}
	publicKey, err := cfg.Audit.ChainPublicKey()
	if err != nil {
		return err
	}
	pii, err := cfg.Audit.PIICipher()
	if err != nil {
		return err
	}
	st, err := store.New(readPool, store.Options{
		Schema: cfg.Audit.Schema, CursorKey: cfg.CursorKey, MaxPageSize: cfg.MaxPageSize,
		IdempotencyWindow: cfg.IdempotencyWindow, Redactor: cfg.Audit.Redactor(), Logger: logger,
		RowLevelSecurity: cfg.ReaderRole != "", SigningKey: signingKey, PII: pii,
	})
	if err != nil {
		return err
	}
	defer st.Close()
	if cfg.CursorKey == nil {
		logger.Warn("auditlog-service: " + envCursorKey + " is not set; page cursors are signed with a random key and stop working when this process restarts or on another replica")
	}

	w := core.NewWriter(core.NewPostgresSink(pool, core.PostgresSinkOptions{Schema: cfg.Audit.Schema}), core.WriterOptions{
		BatchSize: cfg.Audit.BatchSize, FlushInterval: cfg.Audit.FlushInterval, QueueSize: cfg.Audit.QueueSize,
		Redactor: cfg.Audit.Redactor(), Logger: logger,
	})
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if err := w.Close(cctx); err != nil {
			logger.Error("auditlog-service: closing the audit writer", "error", err)
		}
	}()

	metrics, err := newServiceMetrics(w)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer metrics.close(context.Background())

	verifier, err := ginaudit.NewVerifier(ctx, cfg.Audit.JWT, cfg.Audit.ActorTypeAliases, ginaudit.WithLogger(logger))
	if err != nil {
		return fmt.Errorf("JWT verification: %w", err)
	}
	defer verifier.Close()

	if !cfg.RetentionOff {
		err := st.StartRetention(store.RetentionPolicy{
			MaxAge: cfg.Retention, Interval: cfg.RetentionInterval,
			OnCleanup: func(r store.RetentionReport) {
				_, err := core.Log(context.Background(), w, core.Entry{
					Action: "auditlog.retention", Severity: core.SeverityWarning, ResourceType: store.ResourceAuditLogs,
					Actor:  core.Actor{ID: "auditlog-service", Type: core.ActorSystem, Auth: "none"},
					Tenant: core.Tenant{ID: r.TenantID},
					Metadata: map[string]any{"older_than": r.Cutoff.Format(time.RFC3339Nano), "deleted": r.Deleted,
						"policy": map[bool]string{true: "tenant", false: "default"}[r.TenantID != ""]},
				})
				if err != nil {
					logger.Error("recording a retention cleanup", "tenant", r.TenantID, "deleted", r.Deleted, "err", err)
				}
			},
		})
		if err != nil {
			return err
		}
	}

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	r.HandleMethodNotAllowed = true
	r.NoRoute(func(c *gin.Context) {
		c.JSON(http.StatusNotFound, gin.H{"error": gin.H{"code": "not_found", "message": "no such route; see " + cfg.BasePath + "/openapi.yaml"}})
	})
	r.NoMethod(func(c *gin.Context) {
		c.JSON(http.StatusMethodNotAllowed, gin.H{"error": gin.H{"code": "method_not_allowed", "message": "this route does not accept " + c.Request.Method}})
	})
	r.GET("/health", func(c *gin.Context) {
		hctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		h := w.Health()
		writer := ginaudit.NewWriterHealth(h)
		if err := pool.Ping(hctx); err != nil || !h.OK() {
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "audit_writer": writer})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ok", "audit_writer": writer})
	})
	var viewerTokens *ginaudit.ViewerTokens
	if cfg.ViewerTokenKey != nil {
		if viewerTokens, err = ginaudit.NewViewerTokens(cfg.ViewerTokenKey); err != nil {
			return fmt.Errorf("%s: %w", envViewerTokenKey, err)
		}
	}
	metrics.serve(r, w)
	api := r.Group(cfg.BasePath, metrics.api)
	if cfg.AuditRequests {
		mo := ginaudit.Options{Writer: w, Config: cfg.Audit, Verifier: verifier, Logger: logger}
		if viewerTokens != nil {
			mo.Identify = viewerTokens.Identify(verifier) // a viewer's requests are recorded as the viewer's
		}
		api.Use(ginaudit.Middleware(mo))
	}
	page, err := ginaudit.ViewerIndex(cfg.BasePath, "/viewer")
	if err != nil {
		return err
	}
	r.GET("/", gin.WrapH(page))
	var live store.LiveSource
	if cfg.NATSURL != "" {
		nc, err := nats.Connect(cfg.NATSURL, nats.Name("auditlog-service"), nats.MaxReconnects(-1),
			nats.ReconnectWait(250*time.Millisecond))
		if err != nil {
			return fmt.Errorf("%s: %w", envNATSURL, err)
		}
		defer nc.Close()
		nl, err := natsaudit.NewLive(natsaudit.LiveOptions{Conn: nc, Stream: cfg.NATSStream, SubjectPrefix: cfg.NATSSubjectPrefix,
			Tenants: st, Logger: logger})
		if err != nil {
			return err
		}
		defer nl.Close()
		live = nl
		logger.Info("auditlog-service: live streams follow NATS JetStream", "stream", cfg.NATSStream, "subject_prefix", cfg.NATSSubjectPrefix)
	}
	err = ginaudit.MountAPI(api, st, ginaudit.APIOptions{
		Verifier: verifier, Writer: w, RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst,
		MaxBulkRecords: cfg.MaxBulkRecords, MaxBodyBytes: cfg.MaxBodyBytes, MinCleanupAge: cfg.MinCleanupAge,
		MaxStreams: cfg.MaxStreams, WebSocketOrigins: cfg.WebSocketOrigins, WriteTimeout: cfg.WriteTimeout,
		MaxExports: cfg.MaxExports, MaxExportsTotal: cfg.MaxExportsTotal, ChainPublicKey: publicKey, Logger: logger,
		ViewerTokens: viewerTokens, ViewerPath: "/viewer", Live: live,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("auditlog-service: listening", "addr", ln.Addr().String(), "base_path", cfg.BasePath)
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("auditlog-service: shutting down")
	// Live streams never end by themselves: close them first so that Shutdown can finish.
	if nl, ok := live.(*natsaudit.Live); ok {
		nl.Close()
	}
	st.Close()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// readerPool grants role what the read API needs, puts audit_logs under row-level security for it
// and returns a pool whose connections take the role at startup (so that even RESET ROLE keeps
// it). owner is the pool that migrated the schema.
func readerPool(ctx context.Context, owner *pgxpool.Pool, databaseURL, schemaName, role string) (*pgxpool.Pool, error) {
	r := pgx.Identifier{role}.Sanitize()
	q := func(table string) string { return pgx.Identifier{schemaName, table}.Sanitize() }
	for _, stmt := range []string{
		`GRANT USAGE ON SCHEMA ` + pgx.Identifier{schemaName}.Sanitize() + ` TO ` + r,
		`GRANT SELECT, INSERT, DELETE ON ` + q("audit_logs") + ` TO ` + r,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ` + q("audit_tenants") + `, ` + q("audit_idempotency_keys") + `, ` +
			q("audit_stream_listeners") + ` TO ` + r,
		// Ingested records are links of their tenant's hash chain; retention records signed anchors.
		`GRANT SELECT, INSERT, UPDATE ON ` + q("audit_chain_heads") + ` TO ` + r,
		`GRANT SELECT, INSERT ON ` + q("audit_checkpoints") + ` TO ` + r,
		// Personal values are encrypted with per-subject keys when AUDIT_PII_MASTER_KEY is set.
		`GRANT SELECT, INSERT, UPDATE ON ` + q("audit_subject_keys") + ` TO ` + r,
	} {
		if _, err := owner.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("granting the reader role: %w", err)
		}
	}
	if err := schema.EnableRowLevelSecurity(ctx, owner, []string{role}, schema.WithSchema(schemaName)); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["role"] = role
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting as %s: %w", role, err)
	}
	return pool, nil
}
