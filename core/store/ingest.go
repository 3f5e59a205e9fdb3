package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/core"
)

// Input is one record submitted for ingest: the JSON body of POST /logs and each element of the
// "logs" array of POST /logs/bulk. Unknown fields are refused. The id is assigned by the server;
// the tenant comes from the request, never from the body.
type Input struct {
	OccurredAt   string              `json:"occurred_at,omitempty"` // RFC 3339; default now; at most 5 minutes ahead
	Kind         core.Kind           `json:"kind,omitempty"`        // default custom
	Action       string              `json:"action"`                // required
	Severity     core.Severity       `json:"severity,omitempty"`    // default info
	ActorID      string              `json:"actor_id,omitempty"`    // default: the caller
	ActorType    core.ActorType      `json:"actor_type,omitempty"`
	ActorEmail   string              `json:"actor_email,omitempty"`
	ResourceType string              `json:"resource_type,omitempty"`
	ResourceID   string              `json:"resource_id,omitempty"`
	RequestID    string              `json:"request_id,omitempty"`
	Method       string              `json:"method,omitempty"`
	Route        string              `json:"route,omitempty"`
	Path         string              `json:"path,omitempty"`
	Query        map[string][]string `json:"query,omitempty"`
	Status       *int                `json:"status,omitempty"`
	DurationUS   *int64              `json:"duration_us,omitempty"`
	IP           string              `json:"ip,omitempty"`
	UserAgent    string              `json:"user_agent,omitempty"`
	Before       map[string]any      `json:"before,omitempty"`
	After        map[string]any      `json:"after,omitempty"`
	Diff         map[string]Change   `json:"diff,omitempty"`
	Metadata     map[string]any      `json:"metadata,omitempty"`
	TraceID      string              `json:"trace_id,omitempty"` // W3C trace id, 32 lowercase hex digits
	SpanID       string              `json:"span_id,omitempty"`  // W3C span id, 16 lowercase hex digits
}

// Change is one field of an Input's diff: {"from": ..., "to": ...}.
type Change struct {
	From any `json:"from"`
	To   any `json:"to"`
}

// MetaReportedBy is the metadata key that names the caller who submitted a record on behalf of
// another actor.
const MetaReportedBy = "reported_by"

// ItemError is the problem with one submitted record.
type ItemError struct {
	Index   int    `json:"index"`           // position in the request, 0 for POST /logs
	Field   string `json:"field,omitempty"` // the JSON field, when one is at fault
	Message string `json:"message"`
}

// InvalidRecordsError lists every invalid record of a request; nothing of the request was written.
type InvalidRecordsError struct {
	Items []ItemError
}

// Error describes the one invalid record, or counts them.
func (e *InvalidRecordsError) Error() string {
	if len(e.Items) == 1 {
		it := e.Items[0]
		if it.Field != "" {
			return fmt.Sprintf("record %d: %s: %s", it.Index, it.Field, it.Message)
		}
		return fmt.Sprintf("record %d: %s", it.Index, it.Message)
	}
	return fmt.Sprintf("%d records are invalid; nothing was written", len(e.Items))
}

// Unwrap lets errors.Is(err, ErrInvalidRecords) match.
func (e *InvalidRecordsError) Unwrap() error { return ErrInvalidRecords }

// Errors of ingest.
var (
	// ErrInvalidRecords is wrapped by *InvalidRecordsError.
	ErrInvalidRecords = errors.New("invalid records")
	// ErrInvalidBody is returned for a body that is not the expected JSON at all.
	ErrInvalidBody = errors.New("invalid request body")
	// ErrTooManyRecords is returned for a bulk request above the configured maximum.
	ErrTooManyRecords = errors.New("too many records in one request")
	// ErrInvalidIdempotencyKey is returned for a malformed Idempotency-Key.
	ErrInvalidIdempotencyKey = errors.New("invalid Idempotency-Key: 1 to 255 visible ASCII characters")
	// ErrIdempotencyKeyReused is returned when a key is presented again with a different request.
	ErrIdempotencyKeyReused = errors.New("the Idempotency-Key was already used for a different request")
)

// Limits of ingested values.
const (
	maxActionLen  = 256
	maxPathLen    = 4096
	maxFutureSkew = 5 * time.Minute
	maxIdemKey    = 255
	ingestChunk   = 500 // records per INSERT statement (29 parameters each)
)

// ValidateIdempotencyKey checks an Idempotency-Key: 1 to 255 visible ASCII characters.
func ValidateIdempotencyKey(k string) error {
	if k == "" || len(k) > maxIdemKey {
		return ErrInvalidIdempotencyKey
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return ErrInvalidIdempotencyKey
		}
	}
	return nil
}

// DecodeInputs decodes a request body: one Input object, or (bulk) an object {"logs": [...]} of
// at most max Inputs. The body must be valid UTF-8 and hold exactly one JSON value. Problems with
// individual records (unknown fields, wrong types, invalid values) are collected for every record
// into an *InvalidRecordsError; a body that cannot be read as that shape at all is ErrInvalidBody,
// more than max records ErrTooManyRecords.
func DecodeInputs(body []byte, bulk bool, max int, now time.Time) ([]Input, error) {
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: the body is not valid UTF-8", ErrInvalidBody)
	}
	var items []json.RawMessage
	if bulk {
		var envelope struct {
			Logs []json.RawMessage `json:"logs"`
		}
		if err := decodeStrict(body, &envelope); err != nil {
			return nil, fmt.Errorf("%w: want {\"logs\": [ ...records... ]}: %s", ErrInvalidBody, describeJSONError(err))
		}
		if envelope.Logs == nil {
			return nil, fmt.Errorf("%w: want {\"logs\": [ ...records... ]}", ErrInvalidBody)
		}
		if len(envelope.Logs) == 0 {
			return nil, fmt.Errorf("%w: \"logs\" is empty", ErrInvalidBody)
		}
		if len(envelope.Logs) > max {
			return nil, fmt.Errorf("%w: %d records (at most %d)", ErrTooManyRecords, len(envelope.Logs), max)
		}
		items = envelope.Logs
	} else {
		trimmed := bytes.TrimSpace(body)
		if len(trimmed) == 0 || trimmed[0] != '{' {
			return nil, fmt.Errorf("%w: want one JSON object", ErrInvalidBody)
		}
		items = []json.RawMessage{body}
	}
	out := make([]Input, len(items))
	var bad []ItemError
	for i, raw := range items {
		if err := decodeStrict(raw, &out[i]); err != nil {
			field := ""
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				field = te.Field
			}
			if f, ok := unknownField(err); ok {
				field = f
			}
			bad = append(bad, ItemError{Index: i, Field: field, Message: describeJSONError(err)})
			continue
		}
		if ie := out[i].validate(now); ie != nil {
			ie.Index = i
			bad = append(bad, *ie)
		}
	}
	if bad != nil {
		return nil, &InvalidRecordsError{Items: bad}
	}
	return out, nil
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown fields and trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

func unknownField(err error) (string, bool) {
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return strings.Trim(f, `"`), true
	}
	return "", false
}

// describeJSONError turns encoding/json's messages into ones that speak of the request.
func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field == "" {
			return fmt.Sprintf("want a JSON %s, got %s", jsonTypeName(te.Type.Kind().String()), te.Value)
		}
		return fmt.Sprintf("field %q: want %s, got %s", te.Field, jsonTypeName(te.Type.String()), te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, se.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends early"
	}
	if f, ok := unknownField(err); ok {
		return fmt.Sprintf("unknown field %q", f)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonTypeName(goType string) string {
	switch {
	case goType == "string", strings.HasSuffix(goType, "Kind"), strings.HasSuffix(goType, "Severity"), strings.HasSuffix(goType, "ActorType"):
		return "a string"
	case strings.HasPrefix(goType, "map"), goType == "struct":
		return "an object"
	case strings.HasPrefix(goType, "[]"), goType == "slice":
		return "an array"
	case strings.Contains(goType, "int"):
		return "a whole number"
	}
	return goType
}

func itemErr(field, format string, args ...any) *ItemError {
	return &ItemError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// textProblem checks a text field: length, no control characters (except in free text that may
// hold them), valid UTF-8 (already guaranteed for the whole body).
func textProblem(field, s string, limit int) *ItemError {
	if len(s) > limit {
		return itemErr(field, "is %d bytes long (at most %d)", len(s), limit)
	}
	if !utf8.ValidString(s) {
		return itemErr(field, "is not valid UTF-8")
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return itemErr(field, "contains a control character")
	}
	return nil
}

// validate checks one input; the index is filled in by the caller.
func (in *Input) validate(now time.Time) *ItemError {
	if strings.TrimSpace(in.Action) == "" {
		return itemErr("action", "is required")
	}
	for _, t := range []struct {
		field, s string
		max      int
	}{
		{"action", in.Action, maxActionLen}, {"actor_id", in.ActorID, maxTextLen},
		{"actor_email", in.ActorEmail, maxTextLen}, {"resource_type", in.ResourceType, maxTextLen},
		{"resource_id", in.ResourceID, maxTextLen}, {"request_id", in.RequestID, maxTextLen},
		{"method", in.Method, 32}, {"route", in.Route, maxPathLen}, {"path", in.Path, maxPathLen},
		{"user_agent", in.UserAgent, maxTextLen},
	} {
		if e := textProblem(t.field, t.s, t.max); e != nil {
			return e
		}
	}
	if in.TraceID != "" && !core.ValidTraceID(in.TraceID) {
		return itemErr("trace_id", "%q is not a trace id (32 lowercase hexadecimal digits, not all zero)", truncate(in.TraceID, 64))
	}
	if in.SpanID != "" && !core.ValidSpanID(in.SpanID) {
		return itemErr("span_id", "%q is not a span id (16 lowercase hexadecimal digits, not all zero)", truncate(in.SpanID, 64))
	}
	if IsServiceResourceType(in.ResourceType) {
		return itemErr("resource_type", "%q is reserved for the service's own records", in.ResourceType)
	}
	if in.Kind != "" && !in.Kind.Valid() {
		return itemErr("kind", "%q is not http, insert, update, delete or custom", truncate(string(in.Kind), 64))
	}
	if in.Severity != "" && !in.Severity.Valid() {
		return itemErr("severity", "%q is not info, warning, error or critical", truncate(string(in.Severity), 64))
	}
	if in.ActorType != "" && !in.ActorType.Valid() {
		return itemErr("actor_type", "%q is not platform_admin, tenant_user, service, system or anonymous", truncate(string(in.ActorType), 64))
	}
	if in.ActorID == "" && (in.ActorType != "" || in.ActorEmail != "") {
		return itemErr("actor_id", "is required when actor_type or actor_email is given")
	}
	if in.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339Nano, in.OccurredAt)
		if err != nil {
			return itemErr("occurred_at", "%q is not an RFC 3339 time such as 2026-11-24T10:00:00Z", truncate(in.OccurredAt, 64))
		}
		if t.Year() < 1970 {
			return itemErr("occurred_at", "is before 1970")
		}
		if t.After(now.Add(maxFutureSkew)) {
			return itemErr("occurred_at", "is more than %s in the future", maxFutureSkew)
		}
	}
	if in.Status != nil && (*in.Status < 100 || *in.Status > maxStatusCode) {
		return itemErr("status", "%d is not an HTTP status between 100 and %d", *in.Status, maxStatusCode)
	}
	if in.DurationUS != nil && *in.DurationUS < 0 {
		return itemErr("duration_us", "is negative")
	}
	if in.IP != "" {
		a, err := netip.ParseAddr(in.IP)
		if err != nil || a.Zone() != "" {
			return itemErr("ip", "%q is not an IP address", truncate(in.IP, 64))
		}
	}
	for k, vs := range in.Query {
		if e := jsonStringProblem("query", k); e != nil {
			return e
		}
		for _, v := range vs {
			if e := jsonStringProblem("query", v); e != nil {
				return e
			}
		}
	}
	for _, doc := range []struct {
		field string
		v     map[string]any
	}{{"before", in.Before}, {"after", in.After}, {"metadata", in.Metadata}} {
		if e := jsonValueProblem(doc.field, doc.v, 0); e != nil {
			return e
		}
	}
	for k, c := range in.Diff {
		if e := jsonStringProblem("diff", k); e != nil {
			return e
		}
		if e := jsonValueProblem("diff", c.From, 0); e != nil {
			return e
		}
		if e := jsonValueProblem("diff", c.To, 0); e != nil {
			return e
		}
	}
	return nil
}

// jsonStringProblem refuses NUL, which neither text nor jsonb can hold.
func jsonStringProblem(field, s string) *ItemError {
	if strings.IndexByte(s, 0) >= 0 {
		return itemErr(field, "contains a NUL character (\\u0000), which PostgreSQL cannot store")
	}
	return nil
}

// jsonValueProblem walks a decoded JSON value for strings PostgreSQL cannot store.
func jsonValueProblem(field string, v any, depth int) *ItemError {
	if depth > 64 {
		return itemErr(field, "is nested more than 64 levels deep")
	}
	switch x := v.(type) {
	case string:
		return jsonStringProblem(field, x)
	case map[string]any:
		for k, e := range x {
			if p := jsonStringProblem(field, k); p != nil {
				return p
			}
			if p := jsonValueProblem(field, e, depth+1); p != nil {
				return p
			}
		}
	case []any:
		for _, e := range x {
			if p := jsonValueProblem(field, e, depth+1); p != nil {
				return p
			}
		}
	}
	return nil
}

// record converts a validated input into a core record for tenant, submitted by caller.
func (in *Input) record(tenant core.Tenant, caller core.Actor, now time.Time) *core.Record {
	r := &core.Record{
		ID:           core.NewID(),
		OccurredAt:   now,
		Kind:         in.Kind,
		Action:       in.Action,
		Severity:     in.Severity,
		Tenant:       tenant,
		ResourceType: in.ResourceType,
		ResourceID:   in.ResourceID,
		Before:       in.Before,
		After:        in.After,
		RequestID:    in.RequestID,
		Method:       in.Method,
		Route:        in.Route,
		Path:         in.Path,
		Query:        in.Query,
		UserAgent:    in.UserAgent,
		Metadata:     in.Metadata,
		TraceID:      in.TraceID,
		SpanID:       in.SpanID,
	}
	if r.Kind == "" {
		r.Kind = core.KindCustom
	}
	if in.OccurredAt != "" {
		t, _ := time.Parse(time.RFC3339Nano, in.OccurredAt)
		r.OccurredAt = t.UTC()
	}
	if in.Diff != nil {
		r.Diff = make(map[string]core.Change, len(in.Diff))
		for k, c := range in.Diff {
			r.Diff[k] = core.Change{From: c.From, To: c.To}
		}
	}
	if in.Status != nil {
		r.Status = *in.Status
	}
	if in.DurationUS != nil {
		r.Duration = time.Duration(*in.DurationUS) * time.Microsecond
	}
	if in.IP != "" {
		r.IP, _ = netip.ParseAddr(in.IP)
	}
	if in.ActorID == "" {
		r.Actor = caller
	} else {
		// The caller vouches for an actor it names; the record says so and who the caller was.
		r.Actor = core.Actor{ID: in.ActorID, Type: in.ActorType, Email: in.ActorEmail, Auth: "reported"}
		meta := make(map[string]any, len(in.Metadata)+1)
		for k, v := range in.Metadata {
			meta[k] = v
		}
		meta[MetaReportedBy] = caller.ID
		r.Metadata = meta
	}
	return r
}

// IngestRequest is a synchronous write of records.
type IngestRequest struct {
	// TenantID is the tenant every record belongs to: it must be registered and active. Empty
	// writes records without a tenant (platform-level events).
	TenantID string
	// Caller is who submits the records. A record that names no actor is recorded with the caller
	// as its actor; one that names an actor gets actor_auth "reported" and the caller's id in the
	// metadata key MetaReportedBy.
	Caller core.Actor
	Inputs []Input
	// IdempotencyKey, when set, makes the request idempotent within Options.IdempotencyWindow: a
	// repeated request with the same key and RequestHash returns the first request's result
	// without writing; the same key with another RequestHash is ErrIdempotencyKeyReused.
	IdempotencyKey string
	// RequestHash identifies the request's content (for example SHA-256 of the body).
	RequestHash []byte
}

// IngestResult reports what an ingest stored.
type IngestResult struct {
	IDs []uuid.UUID `json:"ids"`
	// Replayed is set when the result is that of an earlier request with the same key.
	Replayed bool `json:"-"`
}

// Ingest validates every input and writes them all in one transaction (all or nothing), with
// the tenant's registry entry locked against a concurrent status change. Invalid inputs are
// reported together in an *InvalidRecordsError; an unregistered tenant is ErrTenantUnknown, an
// inactive or suspended one ErrTenantInactive or ErrTenantSuspended.
func (s *Store) Ingest(ctx context.Context, req IngestRequest) (IngestResult, error) {
	now := time.Now().UTC()
	if len(req.Inputs) == 0 {
		return IngestResult{}, fmt.Errorf("%w: no records", ErrInvalidBody)
	}
	var bad []ItemError
	for i := range req.Inputs {
		if ie := req.Inputs[i].validate(now); ie != nil {
			ie.Index = i
			bad = append(bad, *ie)
		}
	}
	if bad != nil {
		return IngestResult{}, &InvalidRecordsError{Items: bad}
	}
	if req.TenantID != "" {
		if err := ValidateTenantID("tenant_id", req.TenantID); err != nil {
			return IngestResult{}, ErrTenantUnknown
		}
	}
	if req.IdempotencyKey != "" {
		if err := ValidateIdempotencyKey(req.IdempotencyKey); err != nil {
			return IngestResult{}, err
		}
	}
	hash := sha256.Sum256(req.RequestHash)

	var res IngestResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Writes without a tenant are the all-tenants scope's.
		if err := s.setScope(ctx, tx, Scope{TenantID: req.TenantID, AllTenants: req.TenantID == ""}); err != nil {
			return err
		}
		tenant := core.Tenant{ID: req.TenantID}
		if req.TenantID != "" {
			var status string
			var slug *string
			err := tx.QueryRow(ctx, `SELECT status::text, slug FROM `+s.tenants+` WHERE id = $1 FOR SHARE`, req.TenantID).Scan(&status, &slug)
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrTenantUnknown
			}
			if err != nil {
				return err
			}
			switch TenantStatus(status) {
			case TenantInactive:
				return ErrTenantInactive
			case TenantSuspended:
				return ErrTenantSuspended
			}
			if slug != nil {
				tenant.Slug = *slug
			}
		}
		if req.IdempotencyKey != "" {
			replay, err := s.claimKey(ctx, tx, req.TenantID, req.IdempotencyKey, hash[:])
			if err != nil {
				return err
			}
			if replay != nil {
				res = *replay
				return errReplay
			}
		}
		recs := make([]*core.Record, len(req.Inputs))
		res.IDs = make([]uuid.UUID, len(req.Inputs))
		for i := range req.Inputs {
			recs[i] = req.Inputs[i].record(tenant, req.Caller, now)
			res.IDs[i] = recs[i].ID
		}
		for i := 0; i < len(recs); i += ingestChunk {
			if err := s.txw.Write(ctx, core.PgxExecer(tx), recs[i:min(i+ingestChunk, len(recs))]...); err != nil {
				return err
			}
		}
		if req.IdempotencyKey != "" {
			body, _ := json.Marshal(res)
			if _, err := tx.Exec(ctx, `UPDATE `+s.idem+` SET status = 201, response = $3 WHERE scope = $1 AND key = $2`,
				req.TenantID, req.IdempotencyKey, body); err != nil {
				return err
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errReplay):
		res.Replayed = true
		return res, nil
	case errors.Is(err, ErrTenantUnknown), errors.Is(err, ErrTenantInactive), errors.Is(err, ErrTenantSuspended),
		errors.Is(err, ErrIdempotencyKeyReused):
		return IngestResult{}, err
	case err != nil:
		return IngestResult{}, fmt.Errorf("store: ingest: %w", err)
	}
	return res, nil
}

// errReplay ends the ingest transaction without writing when a key's result is replayed.
var errReplay = errors.New("replay")

// claimKey records the key for this request, or returns the stored result of an earlier request
// with the same key. A concurrent request with the same key waits (on the key's row) until the
// first one commits or rolls back.
func (s *Store) claimKey(ctx context.Context, tx pgx.Tx, scope, key string, hash []byte) (*IngestResult, error) {
	window := strconv.FormatInt(s.opts.IdempotencyWindow.Microseconds(), 10) + " microseconds"
	if _, err := tx.Exec(ctx, `DELETE FROM `+s.idem+` WHERE scope = $1 AND key = $2 AND created_at < now() - $3::interval`,
		scope, key, window); err != nil {
		return nil, err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO `+s.idem+` (scope, key, request_hash, status, response) VALUES ($1, $2, $3, 0, '{}')
		ON CONFLICT (scope, key) DO NOTHING`, scope, key, hash)
	if err != nil {
		return nil, err
	}
	if tag.RowsAffected() == 1 {
		return nil, nil
	}
	var stored []byte
	var response []byte
	if err := tx.QueryRow(ctx, `SELECT request_hash, response FROM `+s.idem+` WHERE scope = $1 AND key = $2`,
		scope, key).Scan(&stored, &response); err != nil {
		return nil, err
	}
	if !bytes.Equal(stored, hash) {
		return nil, ErrIdempotencyKeyReused
	}
	var res IngestResult
	if err := json.Unmarshal(response, &res); err != nil {
		return nil, fmt.Errorf("stored idempotent response: %w", err)
	}
	return &res, nil
}
