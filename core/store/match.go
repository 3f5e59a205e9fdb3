package store

import (
	"encoding/json"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Filters evaluated in Go, for records that do not come from a query: a live stream fed by a
// message queue (natsaudit.Live) applies the same Filter as List and Subscribe to each record it
// receives. Match is written to agree with the SQL of List on every record the writers store; the
// differential test in match_test.go compares the two on random records and filters.

// CanMatch reports whether Match evaluates f exactly: it returns nil, or a *ParamError naming the
// parameter Go cannot evaluate as PostgreSQL does. Only the full-text search (Search, parameter
// q) is such a parameter: it depends on PostgreSQL's text search parser and dictionaries.
func (f Filter) CanMatch() error {
	if f.Search != "" {
		return paramErr(ParamSearch, "full-text search is evaluated by PostgreSQL and is not available on this live stream; leave q out, or search with GET /logs")
	}
	return nil
}

// Match reports whether r satisfies every condition of f, as List's SQL would for the stored
// row: text fields compare exactly, actor_email ignoring case (PostgreSQL's lower() in a UTF-8
// database), a condition on a field the record does not have (no status, no address) is false,
// and the service's own records (ServiceResourceTypes) match only with IncludeMeta or a
// ResourceType naming one of them. A filter CanMatch refuses (Search) matches nothing. Match
// does not check the scope: see Scope.Contains.
func (f Filter) Match(r *Record) bool {
	if r == nil || f.Search != "" {
		return false
	}
	at := r.OccurredAt
	if from := f.From.UTC().Truncate(time.Microsecond); !f.From.IsZero() && at.Before(from) {
		return false
	}
	if to := f.To.UTC().Truncate(time.Microsecond); !f.To.IsZero() && !at.Before(to) {
		return false
	}
	switch {
	case f.ActorID != "" && r.ActorID != f.ActorID,
		f.ActorType != "" && r.ActorType != f.ActorType,
		f.ActorEmail != "" && (r.ActorEmail == "" || lowerPG(r.ActorEmail) != lowerPG(f.ActorEmail)),
		f.Action != "" && r.Action != f.Action,
		f.ActionPrefix != "" && !strings.HasPrefix(r.Action, f.ActionPrefix),
		f.ResourceType != "" && r.ResourceType != f.ResourceType,
		f.ResourceID != "" && r.ResourceID != f.ResourceID,
		f.RequestID != "" && r.RequestID != f.RequestID,
		f.TraceID != "" && r.TraceID != f.TraceID:
		return false
	}
	if len(f.Kinds) > 0 && !hasValue(f.Kinds, r.Kind) {
		return false
	}
	if len(f.Severities) > 0 && !hasValue(f.Severities, r.Severity) {
		return false
	}
	if f.StatusMin != 0 && (r.Status == nil || *r.Status < f.StatusMin) {
		return false
	}
	if f.StatusMax != 0 && (r.Status == nil || *r.Status > f.StatusMax) {
		return false
	}
	if f.IP.IsValid() {
		a, err := netip.ParseAddr(r.IP)
		if r.IP == "" || err != nil || !f.IP.Masked().Contains(a) {
			return false
		}
	}
	if len(f.Changed) > 0 && !jsonHasAnyKey(r.Diff, f.Changed) {
		return false
	}
	if !f.IncludeMeta && !IsServiceResourceType(f.ResourceType) && IsServiceResourceType(r.ResourceType) {
		return false
	}
	return true
}

// Contains reports whether r is in the scope: every record for the all-tenants scope, the
// records of exactly that tenant otherwise (never a record without a tenant).
func (sc Scope) Contains(r *Record) bool {
	if r == nil {
		return false
	}
	if sc.AllTenants {
		return true
	}
	return sc.TenantID != "" && r.TenantID == sc.TenantID
}

func hasValue[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// lowerPG lower-cases s as PostgreSQL's lower() does in a UTF-8 database with a libc locale: one
// character at a time, each to its simple lower-case mapping.
func lowerPG(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	return strings.Map(unicode.ToLower, s)
}

// jsonHasAnyKey evaluates PostgreSQL's "doc ?| keys" (and "doc ? key" for one key): true when doc
// is an object with one of the keys at its top level, an array holding one of them as a string,
// or a string equal to one of them. A NULL (empty) document matches nothing.
func jsonHasAnyKey(doc json.RawMessage, keys []string) bool {
	if len(doc) == 0 {
		return false
	}
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return false
	}
	switch v := v.(type) {
	case map[string]any:
		for _, k := range keys {
			if _, ok := v[k]; ok {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok && hasValue(keys, s) {
				return true
			}
		}
	case string:
		return hasValue(keys, v)
	}
	return false
}
