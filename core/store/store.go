package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
)

// Errors returned by the Store. Callers test them with errors.Is; the API maps each to an HTTP
// status.
var (
	// ErrInvalidScope is returned for a Scope that names neither one tenant nor all tenants.
	ErrInvalidScope = errors.New("store: the scope must name one tenant or all tenants")
	// ErrInvalidFilter is wrapped by every *ParamError about a filter, page or option.
	ErrInvalidFilter = errors.New("invalid filter")
	// ErrInvalidCursor is returned for a cursor that is malformed, was tampered with, or belongs
	// to another query (another tenant, other filters, another order, another key).
	ErrInvalidCursor = errors.New("invalid cursor: it is malformed or belongs to a different query")
	// ErrNotFound is returned when a record or tenant does not exist within the scope.
	ErrNotFound = errors.New("not found")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("store: closed")
)

// Options configure a Store. The zero value is usable.
type Options struct {
	// Schema is the PostgreSQL schema holding audit_logs and the read-side tables. Empty means
	// "public".
	Schema string

	// CursorKey signs page cursors (HMAC-SHA256); at least 32 bytes. Processes that serve the same
	// clients (replicas behind a load balancer, restarts) must share it. Nil means a random key
	// per Store: cursors then stop working when the process restarts.
	CursorKey []byte

	// DefaultPageSize is the page size when a query names none. Zero means 50.
	DefaultPageSize int
	// MaxPageSize is the largest page a query may ask for. Zero means 1000.
	MaxPageSize int

	// CleanupBatchSize is how many rows one DELETE statement of a cleanup removes; each batch is
	// its own short transaction, so a cleanup never holds locks on many rows for long. Zero means
	// 5000.
	CleanupBatchSize int

	// IdempotencyWindow is how long an Idempotency-Key is remembered. Zero means 24h.
	IdempotencyWindow time.Duration

	// Redactor is applied to ingested records. Nil means core.NewRedactor(nil, nil).
	Redactor *core.Redactor

	// StreamBuffer is how many records a live-stream subscriber may fall behind before it is
	// disconnected with ErrLagged. Zero means 1024.
	StreamBuffer int

	// StreamStatusInterval is how often the live streams opened with
	// SubscribeOptions.EndOnSuspend check whether their tenant was suspended (one query for all
	// of them, only while there are any), so that a suspension made by any process ends them
	// within about this time. Zero means 1s.
	StreamStatusInterval time.Duration

	// RowLevelSecurity runs every statement on audit_logs in a transaction that first sets
	// schema.TenantSetting (or schema.AllTenantsSetting for the all-tenants scope) locally, for
	// the policies of schema.EnableRowLevelSecurity: the database then refuses other tenants'
	// rows even to a query whose WHERE clause forgot them. It is defence in depth and works only
	// when the pool's role is one of the reader roles given to EnableRowLevelSecurity (not the
	// table owner, who is not restricted). It costs the read side a transaction and one round
	// trip per call (see BENCHMARKS.md); writers through core are not affected. The tenants,
	// idempotency-key and stream-listener tables are outside row-level security.
	RowLevelSecurity bool

	// SigningKey signs the truncation checkpoints that Cleanup and retention record when they
	// delete the first records of a hash chain, so that the chain still verifies from its first
	// remaining record. Nil means chained records are deleted without one (with a warning), and
	// verification of those chains starts, unvouched for, at their first remaining record.
	SigningKey ed25519.PrivateKey

	// PII decrypts the personal values of records on read (core.Config.PIICipher or
	// core.NewPIICipher with the writers' master key) and encrypts those of ingested records.
	// A value whose subject was erased reads as core.ErasedValue. Nil leaves encrypted values as
	// they are stored (core.EncryptedPrefix...) and ingests values plain.
	PII *core.PIICipher

	// Logger receives background problems (the stream listener, retention). Nil means
	// slog.Default().
	Logger *slog.Logger
}

const (
	defaultPageSize          = 50
	defaultMaxPageSize       = 1000
	defaultCleanupBatch      = 5000
	defaultIdempotencyWindow = 24 * time.Hour
	defaultStreamBuffer      = 1024
	defaultStreamStatus      = time.Second
	minCursorKey             = 32
)

var schemaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Store reads and maintains audit_logs. It is safe for concurrent use. Close stops its
// background work (live streams, retention).
type Store struct {
	pool   *pgxpool.Pool
	schema string
	opts   Options
	log    *slog.Logger
	txw    *core.TxWriter

	// Qualified names, quoted once.
	logs, tenants, idem, listeners, searchFn, subjectKeys string

	life   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	hubOnce sync.Once
	hub     *hub

	statsRefreshing atomic.Bool // a background RefreshStats runs

	partBounds partitionBounds // the partition bounds pages are read by (page_window.go)
}

// New returns a Store on pool (which the caller keeps owning and closes after the Store). It
// does not connect: the schema must have been migrated (schema.Migrate).
func New(pool *pgxpool.Pool, opts Options) (*Store, error) {
	if pool == nil {
		return nil, errors.New("store: nil pool")
	}
	if opts.Schema == "" {
		opts.Schema = "public"
	}
	if !schemaName.MatchString(opts.Schema) {
		return nil, fmt.Errorf("store: Options.Schema %q is not a plain identifier", opts.Schema)
	}
	if opts.CursorKey == nil {
		opts.CursorKey = make([]byte, minCursorKey)
		_, _ = rand.Read(opts.CursorKey)
	} else if len(opts.CursorKey) < minCursorKey {
		return nil, fmt.Errorf("store: Options.CursorKey has %d bytes, want at least %d", len(opts.CursorKey), minCursorKey)
	}
	opts.CursorKey = append([]byte(nil), opts.CursorKey...)
	if opts.DefaultPageSize <= 0 {
		opts.DefaultPageSize = defaultPageSize
	}
	if opts.MaxPageSize <= 0 {
		opts.MaxPageSize = defaultMaxPageSize
	}
	if opts.DefaultPageSize > opts.MaxPageSize {
		return nil, fmt.Errorf("store: Options.DefaultPageSize %d is larger than MaxPageSize %d", opts.DefaultPageSize, opts.MaxPageSize)
	}
	if opts.CleanupBatchSize <= 0 {
		opts.CleanupBatchSize = defaultCleanupBatch
	}
	if opts.IdempotencyWindow <= 0 {
		opts.IdempotencyWindow = defaultIdempotencyWindow
	}
	if opts.StreamBuffer <= 0 {
		opts.StreamBuffer = defaultStreamBuffer
	}
	if opts.StreamStatusInterval <= 0 {
		opts.StreamStatusInterval = defaultStreamStatus
	}
	if opts.Redactor == nil {
		opts.Redactor = core.NewRedactor(nil, nil)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	life, cancel := context.WithCancel(context.Background())
	q := func(name string) string { return pgx.Identifier{opts.Schema, name}.Sanitize() }
	return &Store{
		pool:        pool,
		schema:      opts.Schema,
		opts:        opts,
		log:         logger,
		txw:         core.NewTxWriter(opts.Schema, opts.Redactor).WithPII(opts.PII),
		logs:        q("audit_logs"),
		tenants:     q("audit_tenants"),
		idem:        q("audit_idempotency_keys"),
		listeners:   q("audit_stream_listeners"),
		searchFn:    q("audit_search_document"),
		subjectKeys: q("audit_subject_keys"),
		life:        life,
		cancel:      cancel,
	}, nil
}

// Schema returns the PostgreSQL schema the Store reads.
func (s *Store) Schema() string { return s.schema }

// MaxPageSize returns the largest page a query may ask for.
func (s *Store) MaxPageSize() int { return s.opts.MaxPageSize }

// MaxConns returns the size of the Store's connection pool. Callers that hold a connection for
// long, such as exports to slow clients, size their own limits from it.
func (s *Store) MaxConns() int { return int(s.pool.Config().MaxConns) }

// Close ends every live stream and stops background work started by the Store (the stream
// listener, retention loops), waiting for them to finish. It does not close the pool.
func (s *Store) Close() {
	s.cancel()
	s.hubOnce.Do(func() {}) // no hub can start after Close
	if s.hub != nil {
		s.hub.close()
	}
	s.wg.Wait()
}

func (s *Store) closed() bool { return s.life.Err() != nil }

// Scope says whose records a call may see or change.
type Scope struct {
	// TenantID restricts the call to one tenant's records. Rows without a tenant are never in a
	// tenant scope.
	TenantID string
	// AllTenants covers every record, including those without a tenant. Only platform
	// administrators should get it.
	AllTenants bool
}

// TenantScope returns the scope of one tenant.
func TenantScope(id string) Scope { return Scope{TenantID: id} }

// AllTenantsScope returns the scope covering every tenant and rows without a tenant.
func AllTenantsScope() Scope { return Scope{AllTenants: true} }

// Validate reports whether the scope names exactly one tenant or all tenants. A tenant id follows
// the one rule of core.ValidateTenantID; the error then wraps ErrInvalidScope, ErrInvalidTenant
// and core.ErrInvalidTenant.
func (sc Scope) Validate() error {
	if sc.AllTenants == (sc.TenantID != "") {
		return ErrInvalidScope
	}
	if sc.TenantID != "" {
		if err := core.ValidateTenantID(sc.TenantID); err != nil {
			msg, _ := strings.CutPrefix(err.Error(), core.ErrInvalidTenant.Error()+" id: ")
			return fmt.Errorf("%w: %w: %w: tenant_id: %s", ErrInvalidScope, ErrInvalidTenant, core.ErrInvalidTenant, msg)
		}
	}
	return nil
}

// String returns the tenant id, or "*" for all tenants.
func (sc Scope) String() string {
	if sc.AllTenants {
		return "*"
	}
	return sc.TenantID
}

// Record is one audit_logs row as the read side returns it. Its JSON form (the field tags) is the
// API's record representation; NDJSON exports use the same keys. Empty optional fields are left
// out of the JSON.
type Record struct {
	ID           uuid.UUID       `json:"id"`
	OccurredAt   time.Time       `json:"occurred_at"`
	Kind         core.Kind       `json:"kind"`
	Action       string          `json:"action"`
	Severity     core.Severity   `json:"severity"`
	TenantID     string          `json:"tenant_id,omitempty"`
	TenantSlug   string          `json:"tenant_slug,omitempty"`
	ActorID      string          `json:"actor_id,omitempty"`
	ActorType    core.ActorType  `json:"actor_type"`
	ActorEmail   string          `json:"actor_email,omitempty"`
	ActorAuth    string          `json:"actor_auth,omitempty"`
	ResourceType string          `json:"resource_type,omitempty"`
	ResourceID   string          `json:"resource_id,omitempty"`
	Before       json.RawMessage `json:"before,omitempty"`
	After        json.RawMessage `json:"after,omitempty"`
	Diff         json.RawMessage `json:"diff,omitempty"`
	RequestID    string          `json:"request_id,omitempty"`
	Method       string          `json:"method,omitempty"`
	Route        string          `json:"route,omitempty"`
	Path         string          `json:"path,omitempty"`
	Query        json.RawMessage `json:"query,omitempty"`
	Status       *int            `json:"status,omitempty"`
	DurationUS   *int64          `json:"duration_us,omitempty"`
	IP           string          `json:"ip,omitempty"`
	UserAgent    string          `json:"user_agent,omitempty"`
	RequestBody  json.RawMessage `json:"request_body,omitempty"`
	ResponseBody json.RawMessage `json:"response_body,omitempty"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	Version      int             `json:"version"`
	TraceID      string          `json:"trace_id,omitempty"`
	SpanID       string          `json:"span_id,omitempty"`
}

// selectColumns lists the columns in the order scanRecord and the export encoders expect.
const selectColumns = `id, occurred_at, kind::text, action, severity::text, tenant_id, tenant_slug,
	actor_id, actor_type::text, actor_email, actor_auth, resource_type, resource_id,
	before, after, diff, request_id, method, route, path, query, status, duration_us,
	host(ip), user_agent, request_body, response_body, metadata, version, trace_id, span_id`

// queryRecords runs a query of selectColumns on db and appends the records it returns to recs.
func queryRecords(ctx context.Context, db querier, recs []*Record, sql string, args ...any) ([]*Record, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return recs, err
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return recs, err
		}
		recs = append(recs, r)
	}
	return recs, rows.Err()
}

// scanRecord reads one row of selectColumns.
func scanRecord(row pgx.Row) (*Record, error) {
	var (
		r                                                  Record
		kind, severity, actorType                          string
		tenantID, tenantSlug, actorID, actorEmail, auth    *string
		resourceType, resourceID, requestID, method, route *string
		path, ip, userAgent, traceID, spanID               *string
		status                                             *int32
		duration                                           *int64
		version                                            int16
	)
	err := row.Scan(&r.ID, &r.OccurredAt, &kind, &r.Action, &severity, &tenantID, &tenantSlug,
		&actorID, &actorType, &actorEmail, &auth, &resourceType, &resourceID,
		&r.Before, &r.After, &r.Diff, &requestID, &method, &route, &path, &r.Query, &status, &duration,
		&ip, &userAgent, &r.RequestBody, &r.ResponseBody, &r.Metadata, &version, &traceID, &spanID)
	if err != nil {
		return nil, err
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	r.OccurredAt = r.OccurredAt.UTC()
	r.Kind, r.Severity, r.ActorType = core.Kind(kind), core.Severity(severity), core.ActorType(actorType)
	r.TenantID, r.TenantSlug = str(tenantID), str(tenantSlug)
	r.ActorID, r.ActorEmail, r.ActorAuth = str(actorID), str(actorEmail), str(auth)
	r.ResourceType, r.ResourceID = str(resourceType), str(resourceID)
	r.RequestID, r.Method, r.Route, r.Path = str(requestID), str(method), str(route), str(path)
	r.IP, r.UserAgent = str(ip), str(userAgent)
	r.TraceID, r.SpanID = str(traceID), str(spanID)
	if status != nil {
		v := int(*status)
		r.Status = &v
	}
	r.DurationUS = duration
	r.Version = int(version)
	return &r, nil
}
