package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/auditkit/auditkit/core"
)

// LiveSource starts live streams of new records. The Store is one: it follows PostgreSQL's
// notifications and reads the new rows (SubscribeWith). A message queue that carries the records
// before they are stored is another (natsaudit.Live). Whatever the source, a stream delivers each
// new record in the scope that matches the filter once, as the same Record List returns.
type LiveSource interface {
	// SubscribeLive starts a live stream of the records in sc matching f, from now on. It fails
	// with a *ParamError for a filter the source cannot evaluate.
	SubscribeLive(ctx context.Context, sc Scope, f Filter, o SubscribeOptions) (LiveStream, error)
}

// LiveStream is one live stream of a LiveSource; *Subscription is the Store's.
type LiveStream interface {
	// Records delivers the new records. It is closed when the stream ends; Err then says why.
	Records() <-chan *Record
	// Err returns why the stream ended, with the errors of Subscription.Err: nil after Close,
	// the context's error, ErrLagged, ErrInterrupted, ErrTenantSuspended or ErrClosed.
	Err() error
	// Close ends the stream.
	Close()
}

// Records returns C, so that a Subscription is a LiveStream.
func (sub *Subscription) Records() <-chan *Record { return sub.C }

// SubscribeLive is SubscribeWith as a LiveSource.
func (s *Store) SubscribeLive(ctx context.Context, sc Scope, f Filter, o SubscribeOptions) (LiveStream, error) {
	sub, err := s.SubscribeWith(ctx, sc, f, o)
	if err != nil {
		return nil, err
	}
	return sub, nil
}

// RecordOf returns the Record List would return for the row a Sink stores for r, a record as a
// sink receives it (already redacted, for example decoded with core.RecordFromRow): the values
// are those PostgreSQL gives back, JSON documents in the form of PostgreSQL's jsonb (keys
// ordered by length then bytes, numbers as numeric writes them), the time in microseconds, the
// address as host(ip). Personal values are as r holds them. A Store with Options.PII decrypts
// its rows to the same values, but re-encodes the documents that held encrypted values (keys in
// Go's order, values as encrypted): those documents are then equal in content, not byte for
// byte, and a value whose subject was erased reads as erased there only. Version is this library's
// core.RecordVersion, which the chained PostgreSQL sink gives every row it stores. The encoding
// of the returned record with encoding/json is the encoding of the stored row's Record, byte for
// byte.
func RecordOf(r *core.Record) (*Record, error) {
	if r == nil {
		return nil, errors.New("store: RecordOf: nil record")
	}
	out := &Record{
		ID:           r.ID,
		OccurredAt:   r.OccurredAt.UTC().Truncate(time.Microsecond),
		Kind:         r.Kind,
		Action:       r.Action,
		Severity:     r.Severity,
		TenantID:     r.Tenant.ID,
		TenantSlug:   r.Tenant.Slug,
		ActorID:      r.Actor.ID,
		ActorType:    r.Actor.Type,
		ActorEmail:   r.Actor.Email,
		ActorAuth:    r.Actor.Auth,
		ResourceType: r.ResourceType,
		ResourceID:   r.ResourceID,
		RequestID:    r.RequestID,
		Method:       r.Method,
		Route:        r.Route,
		Path:         r.Path,
		UserAgent:    r.UserAgent,
		Version:      core.RecordVersion,
		TraceID:      r.TraceID,
		SpanID:       r.SpanID,
	}
	if out.Action == "" {
		out.Action = core.DefaultAction(r.Kind, r.ResourceType)
	}
	if out.Severity == "" {
		out.Severity = core.SeverityInfo
	}
	if out.ActorType == "" {
		out.ActorType = core.ActorAnonymous
	}
	if r.Kind == core.KindHTTP || r.Status != 0 {
		st, d := r.Status, r.Duration.Microseconds()
		out.Status, out.DurationUS = &st, &d
	}
	if r.IP.IsValid() {
		out.IP = pgHost(r.IP.Unmap())
	}
	var err error
	doc := func(name string, v any, null bool) json.RawMessage {
		if err != nil || null {
			return nil
		}
		b, e := json.Marshal(v)
		if e == nil {
			b, e = JSONB(b)
		}
		if e != nil {
			err = fmt.Errorf("store: RecordOf: %s of record %s: %w", name, r.ID, e)
		}
		return b
	}
	out.Before = doc("before", r.Before, r.Before == nil)
	out.After = doc("after", r.After, r.After == nil)
	out.Diff = doc("diff", r.Diff, r.Diff == nil)
	out.Query = doc("query", r.Query, len(r.Query) == 0)
	out.Metadata = doc("metadata", r.Metadata, len(r.Metadata) == 0)
	body := func(name string, b *core.Body) json.RawMessage {
		if err != nil || b == nil || len(b.Data) == 0 {
			return nil
		}
		c, e := JSONB(b.Data)
		if e != nil {
			err = fmt.Errorf("store: RecordOf: %s of record %s: %w", name, r.ID, e)
		}
		return c
	}
	out.RequestBody = body("request_body", r.RequestBody)
	out.ResponseBody = body("response_body", r.ResponseBody)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// pgHost writes an address as PostgreSQL's host(inet) does: Go's form, except for an IPv6
// address whose first six groups are zero, which PostgreSQL writes with a dotted IPv4 tail.
func pgHost(a netip.Addr) string {
	if a.Is6() {
		b := a.As16()
		zero := true
		for _, c := range b[:12] {
			zero = zero && c == 0
		}
		// The longest run of zero groups must start at the first group and be exactly six
		// long: groups 6 must then be non-zero.
		if zero && (b[12] != 0 || b[13] != 0) {
			return "::" + netip.AddrFrom4([4]byte(b[12:])).String()
		}
	}
	return a.String()
}

// JSONB returns the JSON document doc as PostgreSQL's jsonb writes it, without white space
// between tokens: object keys in jsonb's order (shorter first, then by bytes) with the last of
// duplicate keys kept, strings with jsonb's escapes, numbers as numeric writes them (1e2 is 100,
// 1.50 stays 1.50, -0 is 0). Malformed JSON is an error.
func JSONB(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not a JSON document: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a JSON document: data after the value")
	}
	out := make([]byte, 0, len(doc))
	return appendJSONB(out, v)
}

func appendJSONB(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, v), nil
	case string:
		return appendJSONBString(dst, v), nil
	case json.Number:
		n, err := numericText(string(v))
		if err != nil {
			return nil, err
		}
		return append(dst, n...), nil
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendJSONB(dst, e); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int {
			if len(a) != len(b) {
				return len(a) - len(b)
			}
			return strings.Compare(a, b)
		})
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONBString(dst, k)
			dst = append(dst, ':')
			var err error
			if dst, err = appendJSONB(dst, v[k]); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	}
	return nil, fmt.Errorf("unexpected JSON value %T", v)
}

// appendJSONBString writes s with the escapes of PostgreSQL's escape_json.
func appendJSONBString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\b':
			dst = append(dst, `\b`...)
		case '\f':
			dst = append(dst, `\f`...)
		case '\n':
			dst = append(dst, `\n`...)
		case '\r':
			dst = append(dst, `\r`...)
		case '\t':
			dst = append(dst, `\t`...)
		case '"':
			dst = append(dst, `\"`...)
		case '\\':
			dst = append(dst, `\\`...)
		default:
			if c < ' ' {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			} else {
				dst = append(dst, c)
			}
		}
	}
	return append(dst, '"')
}

// numericText writes a JSON number as PostgreSQL's numeric type does: plain decimal notation
// with as many fraction digits as the input had, less its exponent (at least none).
func numericText(s string) (string, error) {
	bad := fmt.Errorf("%q is not a JSON number", s)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, expText, hasExp := strings.Cut(strings.ToLower(s), "e")
	exp := 0
	if hasExp {
		e, err := strconv.Atoi(expText)
		if err != nil || e > 100000 || e < -100000 {
			return "", bad
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return "", bad
	}
	scale := len(frac) - exp // value = digits × 10^-scale
	if scale < 0 {
		digits += strings.Repeat("0", -scale)
		scale = 0
	}
	if len(digits) <= scale {
		digits = strings.Repeat("0", scale-len(digits)+1) + digits
	}
	ip := strings.TrimLeft(digits[:len(digits)-scale], "0")
	if ip == "" {
		ip = "0"
	}
	out := ip
	if scale > 0 {
		out += "." + digits[len(digits)-scale:]
	}
	if neg && strings.Trim(digits, "0") != "" {
		out = "-" + out
	}
	return out, nil
}
