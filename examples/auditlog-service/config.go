package main

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/natsaudit"
)

// The service's own settings use the AUDITLOG_ prefix; AUDIT_* variables are core's (database,
// schema, JWT, redaction, writer) and are read by core.ConfigFromEnvironment.
const (
	envListenAddr        = "AUDITLOG_LISTEN_ADDR"         // default ":8080"
	envBasePath          = "AUDITLOG_BASE_PATH"           // default "/api/v1"
	envCursorKey         = "AUDITLOG_CURSOR_KEY"          // at least 32 bytes; default random per process
	envRateLimit         = "AUDITLOG_RATE_LIMIT"          // requests per second per tenant, default 20, "off" disables
	envRateBurst         = "AUDITLOG_RATE_BURST"          // default twice the rate
	envMaxPageSize       = "AUDITLOG_MAX_PAGE_SIZE"       // default 1000
	envMaxBulkRecords    = "AUDITLOG_MAX_BULK_RECORDS"    // default 1000
	envMaxBodyBytes      = "AUDITLOG_MAX_BODY_BYTES"      // default 10485760
	envIdempotencyWindow = "AUDITLOG_IDEMPOTENCY_WINDOW"  // default 24h
	envRetention         = "AUDITLOG_RETENTION"           // default age kept: 2160h or 90d; "off" stops the background job
	envRetentionInterval = "AUDITLOG_RETENTION_INTERVAL"  // default 1h
	envMinCleanupAge     = "AUDITLOG_MIN_CLEANUP_AGE"     // default 24h
	envMaxStreams        = "AUDITLOG_MAX_STREAMS"         // per tenant, default 10
	envWebSocketOrigins  = "AUDITLOG_WEBSOCKET_ORIGINS"   // comma list of host patterns
	envWriteTimeout      = "AUDITLOG_WRITE_TIMEOUT"       // per export chunk or event, default 30s
	envMaxExports        = "AUDITLOG_MAX_EXPORTS"         // per tenant, default 2
	envMaxExportsTotal   = "AUDITLOG_MAX_EXPORTS_TOTAL"   // across tenants, default half the pool
	envAuditRequests     = "AUDITLOG_AUDIT_REQUESTS"      // record every API request (ginaudit.Middleware), default true
	envShutdownTimeout   = "AUDITLOG_SHUTDOWN_TIMEOUT"    // default 30s
	envRowLevelSecurity  = "AUDITLOG_ROW_LEVEL_SECURITY"  // reader role name; default off
	envViewerTokenKey    = "AUDITLOG_VIEWER_TOKEN_KEY"    // at least 32 bytes; default: no viewer tokens
	envStreamSource      = "AUDITLOG_STREAM_SOURCE"       // postgres (default) or nats: what live streams follow
	envNATSURL           = "AUDITLOG_NATS_URL"            // with nats: server URL(s); default NATS_URL, else nats.DefaultURL
	envNATSStream        = "AUDITLOG_NATS_STREAM"         // with nats: the stream auditkit ingest reads; default AUDIT
	envNATSSubjectPrefix = "AUDITLOG_NATS_SUBJECT_PREFIX" // with nats: the sinks' subject prefix; default audit
	servicePrefix        = "AUDITLOG_"
)

var serviceVars = []string{
	envListenAddr, envBasePath, envCursorKey, envRateLimit, envRateBurst, envMaxPageSize, envMaxBulkRecords,
	envMaxBodyBytes, envIdempotencyWindow, envRetention, envRetentionInterval, envMinCleanupAge, envMaxStreams,
	envWebSocketOrigins, envAuditRequests, envShutdownTimeout, envWriteTimeout, envMaxExports, envMaxExportsTotal,
	envRowLevelSecurity, envViewerTokenKey, envStreamSource, envNATSURL, envNATSStream, envNATSSubjectPrefix,
}

// config is everything the service reads from its environment.
type config struct {
	Audit             core.Config
	ListenAddr        string
	BasePath          string
	CursorKey         []byte
	RateLimit         float64 // negative: off
	RateBurst         int
	MaxPageSize       int
	MaxBulkRecords    int
	MaxBodyBytes      int64
	IdempotencyWindow time.Duration
	RetentionOff      bool
	Retention         time.Duration // zero: only per-tenant overrides
	RetentionInterval time.Duration
	MinCleanupAge     time.Duration
	MaxStreams        int
	WebSocketOrigins  []string
	WriteTimeout      time.Duration
	MaxExports        int
	MaxExportsTotal   int
	AuditRequests     bool
	ShutdownTimeout   time.Duration
	// ReaderRole, when set, is the role the read API runs as, under row-level security.
	ReaderRole string
	// ViewerTokenKey, when set, signs and verifies viewer tokens (ginaudit.NewViewerTokens).
	ViewerTokenKey []byte
	// NATSURL, when set, makes live streams follow the NATS JetStream subjects the records are
	// published on (natsaudit.Live) rather than PostgreSQL's notifications.
	NATSURL string
	// NATSStream and NATSSubjectPrefix name the stream and its subjects.
	NATSStream, NATSSubjectPrefix string
}

// loadConfig reads the AUDIT_* variables through core and the AUDITLOG_* variables here, reporting
// every problem at once. Unknown AUDITLOG_* variables are warned about, with the closest name.
func loadConfig(environ []string, logger *slog.Logger) (config, error) {
	cfg := config{
		ListenAddr: ":8080", BasePath: "/api/v1", RateLimit: 20, AuditRequests: true,
		RetentionInterval: time.Hour, ShutdownTimeout: 30 * time.Second,
	}
	audit, err := core.ConfigFromEnvironment(environ, logger)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Audit = audit
	vals := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, servicePrefix) {
			continue
		}
		if !slices.Contains(serviceVars, k) {
			if near := closest(k); near != "" {
				logger.Warn("auditlog-service: unknown environment variable ignored", "name", k, "did_you_mean", near)
			} else {
				logger.Warn("auditlog-service: unknown environment variable ignored", "name", k)
			}
			continue
		}
		if _, dup := vals[k]; !dup {
			vals[k] = strings.TrimSpace(v)
		}
	}
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	positiveInt := func(name string, dst *int) {
		if s := vals[name]; s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				bad(name, "%q is not a positive whole number", s)
				return
			}
			*dst = n
		}
	}
	duration := func(name string, dst *time.Duration) {
		if s := vals[name]; s != "" {
			d, err := parseAge(s)
			if err != nil || d <= 0 {
				bad(name, "%q is not a positive duration (2160h, 30m, or days such as 90d)", s)
				return
			}
			*dst = d
		}
	}
	if s := vals[envListenAddr]; s != "" {
		cfg.ListenAddr = s
	}
	if s, ok := vals[envBasePath]; ok && s != "" {
		if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, " ?#:*") {
			bad(envBasePath, "%q must be a path starting with / (no parameters)", s)
		}
		cfg.BasePath = strings.TrimSuffix(s, "/")
	}
	if s := vals[envCursorKey]; s != "" {
		if len(s) < 32 {
			bad(envCursorKey, "is %d bytes long; use at least 32 random bytes", len(s))
		}
		cfg.CursorKey = []byte(s)
	}
	if s := vals[envViewerTokenKey]; s != "" {
		if len(s) < ginaudit.MinViewerKeyBytes {
			bad(envViewerTokenKey, "is %d bytes long; use at least %d random bytes", len(s), ginaudit.MinViewerKeyBytes)
		}
		cfg.ViewerTokenKey = []byte(s)
	}
	if s := vals[envRateLimit]; s != "" {
		if strings.EqualFold(s, "off") {
			cfg.RateLimit = -1
		} else if f, err := strconv.ParseFloat(s, 64); err != nil || f <= 0 || f > 1e6 {
			bad(envRateLimit, "%q is not a positive number of requests per second (or off)", s)
		} else {
			cfg.RateLimit = f
		}
	}
	positiveInt(envRateBurst, &cfg.RateBurst)
	positiveInt(envMaxPageSize, &cfg.MaxPageSize)
	positiveInt(envMaxBulkRecords, &cfg.MaxBulkRecords)
	positiveInt(envMaxStreams, &cfg.MaxStreams)
	positiveInt(envMaxExports, &cfg.MaxExports)
	positiveInt(envMaxExportsTotal, &cfg.MaxExportsTotal)
	duration(envWriteTimeout, &cfg.WriteTimeout)
	var body int
	positiveInt(envMaxBodyBytes, &body)
	cfg.MaxBodyBytes = int64(body)
	duration(envIdempotencyWindow, &cfg.IdempotencyWindow)
	if s := vals[envRetention]; strings.EqualFold(s, "off") {
		cfg.RetentionOff = true
	} else {
		duration(envRetention, &cfg.Retention)
	}
	duration(envRetentionInterval, &cfg.RetentionInterval)
	duration(envMinCleanupAge, &cfg.MinCleanupAge)
	duration(envShutdownTimeout, &cfg.ShutdownTimeout)
	if s := vals[envWebSocketOrigins]; s != "" {
		for o := range strings.SplitSeq(s, ",") {
			if o = strings.TrimSpace(o); o != "" {
				cfg.WebSocketOrigins = append(cfg.WebSocketOrigins, o)
			}
		}
	}
	if s := vals[envAuditRequests]; s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			bad(envAuditRequests, "%q is not true or false", s)
		}
		cfg.AuditRequests = b
	}
	if s := vals[envRowLevelSecurity]; s != "" && !strings.EqualFold(s, "off") {
		if len(s) > 63 || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			bad(envRowLevelSecurity, "%q is not a PostgreSQL role name", s)
		}
		cfg.ReaderRole = s
	}
	switch src := strings.ToLower(vals[envStreamSource]); src {
	case "", "postgres", "postgresql":
		for _, name := range []string{envNATSURL, envNATSStream, envNATSSubjectPrefix} {
			if vals[name] != "" {
				bad(name, "is only used with %s=nats", envStreamSource)
			}
		}
	case "nats":
		cfg.NATSURL = vals[envNATSURL]
		if cfg.NATSURL == "" {
			cfg.NATSURL = envValue(environ, "NATS_URL")
		}
		if cfg.NATSURL == "" {
			cfg.NATSURL = nats.DefaultURL
		}
		cfg.NATSStream, cfg.NATSSubjectPrefix = natsaudit.DefaultStream, natsaudit.DefaultSubjectPrefix
		if s := vals[envNATSStream]; s != "" {
			cfg.NATSStream = s
		}
		if s := vals[envNATSSubjectPrefix]; s != "" {
			cfg.NATSSubjectPrefix = s
		}
	default:
		bad(envStreamSource, "%q is not postgres or nats", vals[envStreamSource])
	}
	if err == nil {
		if cfg.Audit.DatabaseURL == "" {
			bad("AUDIT_DATABASE_URL", "is required")
		}
		if !cfg.Audit.JWT.Enabled() || cfg.Audit.JWT.UnsafeSkipVerification {
			bad("AUDIT_JWT_SECRET, AUDIT_JWT_PUBLIC_KEY or AUDIT_JWT_JWKS_URL", "one is required: the service verifies every caller's token")
		}
	}
	return cfg, errors.Join(errs...)
}

// envValue returns the value of the variable name in environ, or "".
func envValue(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// parseAge reads a Go duration or a whole number of days ("90d").
func parseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 36500 {
			return 0, fmt.Errorf("%q is not a number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// closest returns the known variable within two edits of name, or "".
func closest(name string) string {
	best, bestD := "", 3
	for _, k := range serviceVars {
		if d := editDistance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
