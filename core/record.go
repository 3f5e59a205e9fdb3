package core

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"time"

	"github.com/google/uuid"
)

// RecordVersion is the version of the record format written to the version column. Version 3
// rows carry the trace context columns (trace_id, span_id), which the hash chain covers from this
// version on; version 2 rows carry the hash chain columns (seq, prev_hash, row_hash; NULL when
// written with chaining off); version 1 rows were written before the chain existed.
const RecordVersion = 3

// Kind says what produced a record.
type Kind string

// The kinds of audit records.
const (
	KindHTTP   Kind = "http"   // one HTTP request
	KindInsert Kind = "insert" // a database row was created
	KindUpdate Kind = "update" // a database row was changed
	KindDelete Kind = "delete" // a database row was deleted (also soft deletes)
	KindCustom Kind = "custom" // anything else: manual records, raw SQL, summaries
)

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindHTTP, KindInsert, KindUpdate, KindDelete, KindCustom:
		return true
	}
	return false
}

// Severity grades a record.
type Severity string

// The severities, from least to most severe. The zero value means SeverityInfo.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityError    Severity = "error"
	SeverityCritical Severity = "critical"
)

// Valid reports whether s is one of the defined severities.
func (s Severity) Valid() bool {
	switch s {
	case SeverityInfo, SeverityWarning, SeverityError, SeverityCritical:
		return true
	}
	return false
}

// ActorType classifies who acted.
type ActorType string

// The actor types. The zero value is resolved when a record is accepted: ActorAnonymous when the
// actor has no ID, ActorTenantUser otherwise.
const (
	ActorPlatformAdmin ActorType = "platform_admin"
	ActorTenantUser    ActorType = "tenant_user"
	ActorService       ActorType = "service"
	ActorSystem        ActorType = "system"
	ActorAnonymous     ActorType = "anonymous"
)

// Valid reports whether t is one of the defined actor types.
func (t ActorType) Valid() bool {
	switch t {
	case ActorPlatformAdmin, ActorTenantUser, ActorService, ActorSystem, ActorAnonymous:
		return true
	}
	return false
}

// ErrUnknownActorType is returned when an actor type is neither a defined type nor a configured alias.
var ErrUnknownActorType = errors.New("unknown actor type")

// ParseActorType resolves s to an actor type by exact comparison: s is one of the defined type
// names, byte for byte, or a key of aliases, byte for byte. Nothing is folded or trimmed, so
// "Platform_Admin" or "platform_admin" with a leading no-break space is not platform_admin.
// Anything else (the empty string included) is an error wrapping ErrUnknownActorType: an
// unrecognised type is never guessed, because guessing could grant a caller a more privileged type
// than it has. Callers that must still record the event (the HTTP middleware does) record the
// actor as ActorAnonymous with a warning.
func ParseActorType(s string, aliases map[string]ActorType) (ActorType, error) {
	if t := ActorType(s); t.Valid() {
		return t, nil
	}
	if t, ok := aliases[s]; ok && s != "" {
		if !t.Valid() {
			return "", fmt.Errorf("%w: alias %q maps to %q, which is not an actor type", ErrUnknownActorType, s, t)
		}
		return t, nil
	}
	return "", fmt.Errorf("%w: %q (want one of platform_admin, tenant_user, service, system, anonymous, or a configured alias, exactly)", ErrUnknownActorType, truncateRunes(s, 64))
}

// truncateRunes shortens s to at most n runes for an error message.
func truncateRunes(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i] + "…"
		}
		n--
	}
	return s
}

// Actor is who acted.
type Actor struct {
	// ID identifies the actor in the application's own terms (a user id, a service name); empty
	// when unknown.
	ID string `json:"id,omitempty"`
	// Type classifies the actor; empty is resolved when the record is accepted (see ActorType).
	Type ActorType `json:"type,omitempty"`
	// Email is stored for people reading the trail; it is not used to identify the actor.
	Email string `json:"email,omitempty"`
	// Auth says how the actor was established: "jwt:HS256", "jwks:RS256", "context", "unverified", "none".
	Auth string `json:"auth,omitempty"`
}

// IsZero reports whether no actor is known.
func (a Actor) IsZero() bool { return a == Actor{} }

// Tenant is the tenant a record belongs to.
type Tenant struct {
	// ID is the tenant's stable identifier; the read side scopes every query by it.
	ID string `json:"id,omitempty"`
	// Slug is the tenant's human-readable name, kept for display; it may change, ID may not.
	Slug string `json:"slug,omitempty"`
}

// IsZero reports whether no tenant is known.
func (t Tenant) IsZero() bool { return t == Tenant{} }

// Change is one changed field in a diff.
type Change struct {
	// From is the field's value before the change (nil when the field was absent or NULL).
	From any `json:"from"`
	// To is the field's value after the change (nil when the field was removed or set to NULL).
	To any `json:"to"`
}

// Body is a captured request or response body. Bodies are redacted and converted to a JSON
// document when the record is written, by what their bytes are rather than by their content type;
// Redactor.Body describes the documents.
type Body struct {
	ContentType string // the Content-Type header, which decides how Data is parsed
	Data        []byte // at most the configured capture size
	Truncated   bool   // Data is a prefix of the body
	Size        int64  // the whole body's size in bytes, -1 when unknown
	// Encoding is the body's Content-Encoding (gzip, br, ...), empty for identity. An encoded body
	// is stored like a binary one, by size, with its encoding and content type.
	Encoding string
	// NotCaptured says why the body's bytes were not read ("unsupported content type", "streamed",
	// ...); empty when Data holds them. Such a body is stored by content type and size with this
	// reason, never as an empty body.
	NotCaptured string
}

// Record is one audit event: one row of audit_logs.
//
// A record handed to a Writer (or added to a Collector) belongs to it from then on: the caller
// must not modify it or the maps it refers to. Redaction makes copies; it never changes the
// caller's data.
type Record struct {
	ID           uuid.UUID           // UUIDv7; generated when zero
	OccurredAt   time.Time           // set to now when zero
	Kind         Kind                // what produced the record; required
	Action       string              // when empty, DefaultAction(Kind, ResourceType) is stored
	Severity     Severity            // empty means SeverityInfo
	Tenant       Tenant              // the tenant the record belongs to; zero for records outside any tenant
	Actor        Actor               // who acted; zero for an anonymous actor
	ResourceType string              // what was acted on: a table or an entity
	ResourceID   string              // its primary key (composite keys as a stable JSON text)
	Before       map[string]any      // the row before the change; nil for an insert; redacted when written
	After        map[string]any      // the row after the change; nil for a delete; redacted when written
	Diff         map[string]Change   // the changed fields only; redacted when written
	RequestID    string              // correlates the records of one request (X-Request-ID or generated)
	Method       string              // HTTP method
	Route        string              // route template, e.g. /users/:id
	Path         string              // the request's path, without the query string
	Query        map[string][]string // query parameters, redacted when written (see also SetRawQuery)
	Status       int                 // HTTP status code, 0..999; 0 when not an HTTP record
	Duration     time.Duration       // stored in microseconds
	IP           netip.Addr          // the client's address; the zero Addr stores NULL
	UserAgent    string              // the User-Agent header
	RequestBody  *Body               // captured request body, when capture is on; nil otherwise
	ResponseBody *Body               // captured response body, when capture is on; nil otherwise
	Metadata     map[string]any      // free-form details, redacted when written
	// TraceID and SpanID are the W3C trace context of the span that was active when the record was
	// made (32 and 16 lowercase hexadecimal digits), so that a record links to its trace; empty
	// outside a trace. StampFromContext fills them from an OpenTelemetry span in the context.
	TraceID string
	SpanID  string

	// Set by a Writer with a spool: the record's row values, already redacted and encoded (the
	// sink stores them as they are), and the spool segment that holds the record until it is stored.
	row      []any
	spoolSeg uint64
	spooled  bool
	// canon holds the jsonb texts of row's documents when the Writer wrote them while it encoded
	// the row for a hash chain (see canon.go); nil otherwise.
	canon *rowCanon
	// link, on the first record of a batch the Writer encoded for a chained PostgresSink, is the
	// batch linked ahead by the encoding goroutine (see PostgresSink.prelink); taken, once, by
	// the batch's first write.
	link *prelinked

	// rawQuery is the query string SetRawQuery gave, parsed into Query when the record is
	// redacted for writing.
	rawQuery string
}

// SetRawQuery gives the record its query as the request's raw query string (what follows the
// "?", without it), so that the caller need not parse it on the request path: when the record is
// redacted for writing (by a Writer, TxWriter, Log or Redactor.Record) and Query is nil, Query is
// filled from q as url.ParseQuery parses it, the pairs that do not parse being left out. A Query
// that is not nil is kept and q ignored. An empty q clears a query set earlier by SetRawQuery.
func (r *Record) SetRawQuery(q string) { r.rawQuery = q }

// queryValues returns the record's query parameters: Query, or when it is nil the parameters
// parsed from the raw query SetRawQuery gave (nil when there is none).
func (r *Record) queryValues() map[string][]string {
	if r.Query != nil || r.rawQuery == "" {
		return r.Query
	}
	v, _ := url.ParseQuery(r.rawQuery) // what parses of a malformed query is kept
	return v
}

// ErrInvalidRecord is wrapped by the errors Validate returns.
var ErrInvalidRecord = errors.New("invalid audit record")

// Validate checks the fields a database would reject and the enumerations. It does not change r.
func (r *Record) Validate() error {
	if r == nil {
		return fmt.Errorf("%w: nil record", ErrInvalidRecord)
	}
	if !r.Kind.Valid() {
		return fmt.Errorf("%w: kind %q (want http, insert, update, delete or custom)", ErrInvalidRecord, r.Kind)
	}
	if r.Severity != "" && !r.Severity.Valid() {
		return fmt.Errorf("%w: severity %q (want info, warning, error or critical)", ErrInvalidRecord, r.Severity)
	}
	if r.Actor.Type != "" && !r.Actor.Type.Valid() {
		return fmt.Errorf("%w: actor type %q", ErrInvalidRecord, r.Actor.Type)
	}
	if r.Status < 0 || r.Status > 999 {
		return fmt.Errorf("%w: status %d out of range", ErrInvalidRecord, r.Status)
	}
	if r.Duration < 0 {
		return fmt.Errorf("%w: negative duration %s", ErrInvalidRecord, r.Duration)
	}
	if r.TraceID != "" && !validTraceHex(r.TraceID, 32) {
		return fmt.Errorf("%w: trace id %q (want 32 lowercase hexadecimal digits, not all zero)", ErrInvalidRecord, truncateRunes(r.TraceID, 40))
	}
	if r.SpanID != "" && !validTraceHex(r.SpanID, 16) {
		return fmt.Errorf("%w: span id %q (want 16 lowercase hexadecimal digits, not all zero)", ErrInvalidRecord, truncateRunes(r.SpanID, 40))
	}
	if !r.OccurredAt.IsZero() && (r.OccurredAt.Before(minOccurredAt) || r.OccurredAt.After(maxOccurredAt)) {
		return fmt.Errorf("%w: occurred_at %s is outside the range PostgreSQL can store (4713 BC to 294276 AD)",
			ErrInvalidRecord, r.OccurredAt.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// validTraceHex reports whether s is a W3C trace context id of n lowercase hexadecimal digits
// that are not all zero (an all-zero id is invalid in the W3C format).
func validTraceHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	nonzero := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '0':
		case '1' <= c && c <= '9', 'a' <= c && c <= 'f':
			nonzero = true
		default:
			return false
		}
	}
	return nonzero
}

// ValidTraceID reports whether s is a W3C trace id: 32 lowercase hexadecimal digits, not all zero.
func ValidTraceID(s string) bool { return validTraceHex(s, 32) }

// ValidSpanID reports whether s is a W3C span (parent) id: 16 lowercase hexadecimal digits, not all zero.
func ValidSpanID(s string) bool { return validTraceHex(s, 16) }

// The range of PostgreSQL's timestamptz, in Go's proleptic Gregorian calendar, where year 0 is 1
// BC. Outside it pgx's encoding (microseconds since 2000) wraps around or the server refuses the
// row, so such a time is refused when the record is accepted.
var (
	minOccurredAt = time.Date(-4713, time.November, 24, 0, 0, 0, 0, time.UTC)
	maxOccurredAt = time.Date(294276, time.December, 31, 23, 59, 59, 999999999, time.UTC)
)

// DefaultAction is the action recorded when a record has none: "http.request" for HTTP records,
// "<resource>.<kind>" for row changes, "custom" otherwise.
func DefaultAction(kind Kind, resourceType string) string {
	switch kind {
	case KindHTTP:
		return "http.request"
	case KindInsert, KindUpdate, KindDelete:
		if resourceType == "" {
			return string(kind)
		}
		return resourceType + "." + string(kind)
	}
	return string(KindCustom)
}

// normalize fills the defaults of an accepted record that cost no allocation; the default action is
// filled in when the record is encoded, off the request path.
func (r *Record) normalize(now time.Time) {
	if r.ID == uuid.Nil {
		r.ID = newID()
	}
	if r.OccurredAt.IsZero() {
		r.OccurredAt = now
	}
	if r.Severity == "" {
		r.Severity = SeverityInfo
	}
	if r.Actor.Type == "" {
		if r.Actor.ID == "" {
			r.Actor.Type = ActorAnonymous
		} else {
			r.Actor.Type = ActorTenantUser
		}
	}
}

// newID returns a UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 12 bits of sub-millisecond
// time (so ids made by one process sort by time), then 62 random bits from the runtime's ChaCha8
// generator. It neither locks nor allocates, unlike reading the system random source per id; ids
// need to be unique and time-ordered, not secret.
func newID() uuid.UUID {
	now := time.Now()
	ms := uint64(now.UnixMilli())
	frac := uint64(now.Nanosecond()%1e6) * 4096 / 1e6
	r := rand.Uint64()
	var id uuid.UUID
	binary.BigEndian.PutUint64(id[0:8], ms<<16|0x7000|frac)
	binary.BigEndian.PutUint64(id[8:16], r>>2|0x8000000000000000)
	return id
}

// NewID returns a new record id (a time-ordered UUIDv7).
func NewID() uuid.UUID { return newID() }
