package store

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/auditkit/auditkit/core"
)

// Filter selects records. Every set field narrows the selection (they are combined with AND);
// the zero Filter selects everything in the scope.
type Filter struct {
	From time.Time // occurred_at >= From (inclusive); zero means unbounded
	To   time.Time // occurred_at < To (exclusive); zero means unbounded

	ActorID    string
	ActorType  core.ActorType
	ActorEmail string // compared ignoring case

	Action       string // exact match
	ActionPrefix string // actions starting with this text, e.g. "invoice."

	Kinds      []core.Kind     // any of these
	Severities []core.Severity // any of these

	ResourceType string
	ResourceID   string
	RequestID    string
	// TraceID selects the records made within one OpenTelemetry trace (32 lowercase hexadecimal
	// digits).
	TraceID string

	StatusMin int // status >= StatusMin; zero means unbounded
	StatusMax int // status <= StatusMax; zero means unbounded

	// IP selects records whose client address lies in the prefix (a single address is a /32 or
	// /128 prefix).
	IP netip.Prefix

	// Search is free text matched against the words of action, resource type and id, path and
	// metadata (PostgreSQL full-text search, websearch syntax: words are ANDed, "quoted phrases",
	// "or", -excluded). Punctuation inside identifiers separates words: "user.delete" finds
	// records holding both "user" and "delete".
	Search string

	// Changed selects records whose diff has any of these fields (for example every change of
	// a customer's email). A redacted field keeps its entry in the diff with both sides masked,
	// so filtering by it works without revealing its values. Field names are 1 to 128 bytes of
	// letters, digits and _ - . : $ @ /, at most 20 of them.
	Changed []string

	// IncludeMeta includes the service's own records (see ServiceResourceTypes): who searched,
	// read, exported, streamed or cleaned up the log, tenant changes, and the HTTP records of the
	// read API's own requests. They are left out by default, so that a tenant's newest records are
	// its own activity, not its browsing of the log. A filter that names one of the service's
	// resource types (resource_type=audit_logs) asks for them and includes them.
	IncludeMeta bool
}

// The resource types of the service's own records: the read API's records of its own use (kind
// custom) and the HTTP records of its requests (kind http) carry one of them, and ingest refuses
// them, so that a record submitted by a client is never taken for one of the service's.
const (
	ResourceAuditLogs    = "audit_logs"    // searches, reads, exports, stats, streams, cleanups
	ResourceAuditTenants = "audit_tenants" // the tenant registry
)

// ServiceResourceTypes lists the resource types of the service's own records.
var ServiceResourceTypes = []string{ResourceAuditLogs, ResourceAuditTenants}

// IsServiceResourceType reports whether t is one of ServiceResourceTypes.
func IsServiceResourceType(t string) bool {
	return t == ResourceAuditLogs || t == ResourceAuditTenants
}

// The query parameters ParseFilter reads, in the order they are documented.
const (
	ParamFrom         = "from"
	ParamTo           = "to"
	ParamActorID      = "actor_id"
	ParamActorType    = "actor_type"
	ParamActorEmail   = "actor_email"
	ParamAction       = "action"
	ParamActionPrefix = "action_prefix"
	ParamKind         = "kind"
	ParamSeverity     = "severity"
	ParamResourceType = "resource_type"
	ParamResourceID   = "resource_id"
	ParamRequestID    = "request_id"
	ParamTraceID      = "trace_id"
	ParamStatusMin    = "status_min"
	ParamStatusMax    = "status_max"
	ParamIP           = "ip"
	ParamSearch       = "q"
	ParamChanged      = "changed"
	ParamIncludeMeta  = "include_meta"
)

// FilterParams lists the query parameters of a Filter.
var FilterParams = []string{
	ParamFrom, ParamTo, ParamActorID, ParamActorType, ParamActorEmail, ParamAction, ParamActionPrefix,
	ParamKind, ParamSeverity, ParamResourceType, ParamResourceID, ParamRequestID, ParamTraceID,
	ParamStatusMin, ParamStatusMax, ParamIP, ParamSearch, ParamChanged, ParamIncludeMeta,
}

// Limits on filter values. Longer values cannot match anything the writers store, and bounding
// them keeps hostile input cheap to refuse.
const (
	maxTextLen    = 1024
	maxTenantLen  = 128
	maxSearchLen  = 512
	maxStatusCode = 999
	// Diff keys are column or JSON field names: 128 bytes is ample for both, and 20 fields is
	// more than a question about one entity's changes asks.
	maxFieldLen = 128
	maxFields   = 20
)

// ParamError reports a bad parameter: which one and what is wrong with it. It wraps
// ErrInvalidFilter.
type ParamError struct {
	Param   string
	Problem string
}

// Error names the parameter and the problem.
func (e *ParamError) Error() string { return e.Param + ": " + e.Problem }

// Unwrap lets errors.Is(err, ErrInvalidFilter) match.
func (e *ParamError) Unwrap() error { return ErrInvalidFilter }

func paramErr(p, format string, args ...any) *ParamError {
	return &ParamError{Param: p, Problem: fmt.Sprintf(format, args...)}
}

// checkText refuses what PostgreSQL text cannot hold (NUL, invalid UTF-8) and overlong values.
func checkText(param, s string, limit int) error {
	switch {
	case len(s) > limit:
		return paramErr(param, "is %d bytes long (at most %d)", len(s), limit)
	case !utf8.ValidString(s):
		return paramErr(param, "is not valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		return paramErr(param, "contains a NUL character")
	}
	return nil
}

// ParseTime reads a time parameter: RFC 3339 with an offset (2026-11-24T10:00:00Z,
// 2026-11-24T10:00:00.5+01:00) or a date (2026-11-24, midnight UTC). The result is in UTC,
// truncated to microseconds (PostgreSQL's precision).
func ParseTime(param, s string) (time.Time, error) {
	if err := checkText(param, s, 64); err != nil {
		return time.Time{}, err
	}
	var t time.Time
	var err error
	if len(s) == len("2006-01-02") {
		t, err = time.Parse(time.DateOnly, s)
	} else {
		t, err = time.Parse(time.RFC3339Nano, s)
	}
	if err != nil {
		return time.Time{}, paramErr(param, "%q is not an RFC 3339 time (2026-11-24T10:00:00Z) or a date (2026-11-24)", s)
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return time.Time{}, paramErr(param, "%q is outside the years 1 to 9999", s)
	}
	return t.UTC().Truncate(time.Microsecond), nil
}

// ParseFilter reads a Filter from query parameters (see FilterParams); other parameters are
// ignored. A parameter given twice, an unknown enumeration value, a malformed time, number or
// address, or a value that is not valid UTF-8 is an error naming the parameter (*ParamError).
func ParseFilter(v url.Values) (Filter, error) {
	var f Filter
	get := func(p string) (string, bool, error) {
		vals, ok := v[p]
		if !ok {
			return "", false, nil
		}
		if len(vals) != 1 {
			return "", false, paramErr(p, "is given %d times; give it once", len(vals))
		}
		s := vals[0]
		if s == "" {
			return "", false, paramErr(p, "is empty; leave it out to not filter by it")
		}
		return s, true, nil
	}
	for _, p := range FilterParams {
		s, ok, err := get(p)
		if err != nil {
			return Filter{}, err
		}
		if !ok {
			continue
		}
		if err := checkText(p, s, maxTextLen); err != nil {
			return Filter{}, err
		}
		switch p {
		case ParamFrom:
			f.From, err = ParseTime(p, s)
		case ParamTo:
			f.To, err = ParseTime(p, s)
		case ParamActorID:
			f.ActorID = s
		case ParamActorType:
			f.ActorType = core.ActorType(s)
		case ParamActorEmail:
			f.ActorEmail = s
		case ParamAction:
			f.Action = s
		case ParamActionPrefix:
			f.ActionPrefix = s
		case ParamKind:
			for _, k := range splitList(s) {
				f.Kinds = append(f.Kinds, core.Kind(k))
			}
		case ParamSeverity:
			for _, k := range splitList(s) {
				f.Severities = append(f.Severities, core.Severity(k))
			}
		case ParamResourceType:
			f.ResourceType = s
		case ParamResourceID:
			f.ResourceID = s
		case ParamRequestID:
			f.RequestID = s
		case ParamTraceID:
			f.TraceID = s
		case ParamStatusMin:
			f.StatusMin, err = parseStatus(p, s)
		case ParamStatusMax:
			f.StatusMax, err = parseStatus(p, s)
		case ParamIP:
			f.IP, err = parseIP(p, s)
		case ParamSearch:
			f.Search = s
		case ParamChanged:
			f.Changed = splitList(s)
		case ParamIncludeMeta:
			switch s {
			case "true":
				f.IncludeMeta = true
			case "false":
			default:
				err = paramErr(p, "%q is not true or false", s)
			}
		}
		if err != nil {
			return Filter{}, err
		}
	}
	f.normalize()
	if err := f.Validate(); err != nil {
		return Filter{}, err
	}
	return f, nil
}

func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		out = append(out, strings.TrimSpace(item))
	}
	return out
}

func parseStatus(p, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > maxStatusCode {
		return 0, paramErr(p, "%q is not an HTTP status between 100 and %d", s, maxStatusCode)
	}
	return n, nil
}

func parseIP(p, s string) (netip.Prefix, error) {
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if pfx, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, paramErr(p, "%q is not an IP address or CIDR prefix", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, paramErr(p, "%q is not an IP address or CIDR prefix", s)
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	// Stored addresses are unmapped (10.0.0.1, never ::ffff:10.0.0.1); filter the same way.
	a := pfx.Addr()
	if a.Is4In6() && pfx.Bits() >= 96 {
		pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
	}
	return pfx.Masked(), nil
}

// normalize sorts and de-duplicates the lists and truncates the times to PostgreSQL's
// microseconds, so that equal filters encode equally.
func (f *Filter) normalize() {
	f.From = f.From.UTC().Truncate(time.Microsecond)
	f.To = f.To.UTC().Truncate(time.Microsecond)
	slices.Sort(f.Kinds)
	f.Kinds = slices.Compact(f.Kinds)
	slices.Sort(f.Severities)
	f.Severities = slices.Compact(f.Severities)
	slices.Sort(f.Changed)
	f.Changed = slices.Compact(f.Changed)
	if f.IP.IsValid() {
		f.IP = f.IP.Masked()
	}
	if IsServiceResourceType(f.ResourceType) {
		f.IncludeMeta = true
	}
}

// Validate checks every field: enumerations, ranges, lengths, UTF-8. Errors are *ParamError
// values named after the query parameter.
func (f Filter) Validate() error {
	texts := []struct {
		p, s string
		max  int
	}{
		{ParamActorID, f.ActorID, maxTextLen}, {ParamActorEmail, f.ActorEmail, maxTextLen},
		{ParamAction, f.Action, maxTextLen}, {ParamActionPrefix, f.ActionPrefix, maxTextLen},
		{ParamResourceType, f.ResourceType, maxTextLen}, {ParamResourceID, f.ResourceID, maxTextLen},
		{ParamRequestID, f.RequestID, maxTextLen}, {ParamSearch, f.Search, maxSearchLen},
	}
	for _, t := range texts {
		if err := checkText(t.p, t.s, t.max); err != nil {
			return err
		}
	}
	if f.TraceID != "" && !core.ValidTraceID(f.TraceID) {
		return paramErr(ParamTraceID, "%q is not a trace id (32 lowercase hexadecimal digits, not all zero)", truncate(f.TraceID, 40))
	}
	if f.ActorType != "" && !f.ActorType.Valid() {
		return paramErr(ParamActorType, "%q is not an actor type (platform_admin, tenant_user, service, system, anonymous)", f.ActorType)
	}
	for _, k := range f.Kinds {
		if !k.Valid() {
			return paramErr(ParamKind, "%q is not a kind (http, insert, update, delete, custom)", k)
		}
	}
	for _, s := range f.Severities {
		if !s.Valid() {
			return paramErr(ParamSeverity, "%q is not a severity (info, warning, error, critical)", s)
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return paramErr(ParamTo, "must be after from (%s)", f.From.Format(time.RFC3339Nano))
	}
	for _, st := range []struct {
		p string
		n int
	}{{ParamStatusMin, f.StatusMin}, {ParamStatusMax, f.StatusMax}} {
		if st.n != 0 && (st.n < 100 || st.n > maxStatusCode) {
			return paramErr(st.p, "%d is not an HTTP status between 100 and %d", st.n, maxStatusCode)
		}
	}
	if f.StatusMin != 0 && f.StatusMax != 0 && f.StatusMin > f.StatusMax {
		return paramErr(ParamStatusMax, "%d is below status_min %d", f.StatusMax, f.StatusMin)
	}
	if f.IP.IsValid() && f.IP.Addr().Zone() != "" {
		return paramErr(ParamIP, "must not have an IPv6 zone")
	}
	if len(f.Changed) > maxFields {
		return paramErr(ParamChanged, "names %d fields (at most %d)", len(f.Changed), maxFields)
	}
	for _, name := range f.Changed {
		if err := checkField(name); err != nil {
			return err
		}
	}
	return nil
}

// checkField refuses a changed= field name that no writer stores as a diff key. Commas separate
// names and are therefore never part of one; the other characters are those of column names,
// JSON field names and dotted paths.
func checkField(name string) error {
	if err := checkText(ParamChanged, name, maxFieldLen); err != nil {
		return err
	}
	if name == "" {
		return paramErr(ParamChanged, "has an empty field name; give field names separated by commas")
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("_-.:$@/", r) {
			return paramErr(ParamChanged, "field name %q has the character %q; use letters, digits and _ - . : $ @ /", name, r)
		}
	}
	return nil
}

// Values encodes the filter as the query parameters ParseFilter reads: ParseFilter(f.Values())
// returns f (normalised). Unset fields are left out.
func (f Filter) Values() url.Values {
	v := url.Values{}
	set := func(p, s string) {
		if s != "" {
			v.Set(p, s)
		}
	}
	if !f.From.IsZero() {
		v.Set(ParamFrom, f.From.UTC().Format(time.RFC3339Nano))
	}
	if !f.To.IsZero() {
		v.Set(ParamTo, f.To.UTC().Format(time.RFC3339Nano))
	}
	set(ParamActorID, f.ActorID)
	set(ParamActorType, string(f.ActorType))
	set(ParamActorEmail, f.ActorEmail)
	set(ParamAction, f.Action)
	set(ParamActionPrefix, f.ActionPrefix)
	if len(f.Kinds) > 0 {
		ks := make([]string, len(f.Kinds))
		for i, k := range f.Kinds {
			ks[i] = string(k)
		}
		v.Set(ParamKind, strings.Join(ks, ","))
	}
	if len(f.Severities) > 0 {
		ss := make([]string, len(f.Severities))
		for i, s := range f.Severities {
			ss[i] = string(s)
		}
		v.Set(ParamSeverity, strings.Join(ss, ","))
	}
	set(ParamResourceType, f.ResourceType)
	set(ParamResourceID, f.ResourceID)
	set(ParamRequestID, f.RequestID)
	set(ParamTraceID, f.TraceID)
	if f.StatusMin != 0 {
		v.Set(ParamStatusMin, strconv.Itoa(f.StatusMin))
	}
	if f.StatusMax != 0 {
		v.Set(ParamStatusMax, strconv.Itoa(f.StatusMax))
	}
	if f.IP.IsValid() {
		v.Set(ParamIP, f.IP.String())
	}
	set(ParamSearch, f.Search)
	if len(f.Changed) > 0 {
		v.Set(ParamChanged, strings.Join(f.Changed, ","))
	}
	if f.IncludeMeta {
		v.Set(ParamIncludeMeta, "true")
	}
	return v
}

// Map returns the set filter fields as parameter names and values, for audit metadata.
func (f Filter) Map() map[string]any {
	out := map[string]any{}
	for k, vs := range f.Values() {
		out[k] = vs[0]
	}
	return out
}

// canonical is the filter's stable encoding (sorted parameters), used to bind cursors and group
// stream subscribers.
func (f Filter) canonical() string {
	f.normalize()
	return f.Values().Encode()
}

// sqlBuilder accumulates a statement and its arguments.
type sqlBuilder struct {
	sb   strings.Builder
	args []any
}

// arg adds a parameter and returns its placeholder.
func (b *sqlBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return "$" + strconv.Itoa(len(b.args))
}

func (b *sqlBuilder) w(parts ...string) {
	for _, p := range parts {
		b.sb.WriteString(p)
	}
}

// searchTranslate is the punctuation the search document turns into spaces (migration 0002);
// queries are translated the same way so that their words line up with the document's.
const (
	searchFrom = `./_:@\"{}[],=?&#`
	searchTo   = `                `
)

// searchCond appends the full-text condition for the words of q on the row's search document.
// The expression is the one the search index is built on, so the index can serve it.
//
// When q is one word of ASCII letters and digits, the document can hold it only if the lowercased
// text the document is made of contains it: that is tested first, and costs a fraction of
// building the document, which a page that walks a tenant's records in time order (the plan for
// a common word) otherwise builds for every record it reads. The test only rejects records that
// the document rejects too, so the result is the same.
func (s *Store) searchCond(b *sqlBuilder, q string) {
	query := func() {
		b.w("websearch_to_tsquery('pg_catalog.simple', translate(", b.arg(q), ", '", searchFrom, "', '", searchTo, "'))")
	}
	if searchWord(q) {
		// The query is a constant: the planner folds the count of its nodes, and the guard that
		// the word became one lexeme costs nothing when it runs. "<> 0", not "> 0": the planner
		// estimates it to keep nearly every row (an inequality, a third), so the estimate of the
		// matches, and with it the choice between the tenant/time walk and the search index,
		// stays the one of the document test alone.
		b.w(" AND (numnode(")
		query()
		b.w(") <> 1 OR strpos(lower(concat_ws(' ', action, resource_type, resource_id, path, metadata::text)), lower(", b.arg(q), ")) <> 0)")
	}
	b.w(" AND ", s.searchFn, "(action, resource_type, resource_id, path, metadata) @@ ")
	query()
}

// searchWord reports whether q is one word of ASCII letters and digits: then the search query is
// that word alone, lowercased as lower() does, and every document that holds it is made of a text
// that contains it.
func searchWord(q string) bool {
	for i := 0; i < len(q); i++ {
		if c := q[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return q != ""
}

// where writes the conditions of scope and f, each preceded by " AND ", after a leading "TRUE".
func (s *Store) where(b *sqlBuilder, sc Scope, f Filter) {
	b.w(" WHERE TRUE")
	if !sc.AllTenants {
		b.w(" AND tenant_id = ", b.arg(sc.TenantID))
	}
	if !f.From.IsZero() {
		b.w(" AND occurred_at >= ", b.arg(f.From))
	}
	if !f.To.IsZero() {
		b.w(" AND occurred_at < ", b.arg(f.To))
	}
	eq := func(col, v string) {
		if v != "" {
			b.w(" AND ", col, " = ", b.arg(v))
		}
	}
	eq("actor_id", f.ActorID)
	eq("actor_type::text", string(f.ActorType))
	if f.ActorEmail != "" {
		b.w(" AND lower(actor_email) = lower(", b.arg(f.ActorEmail), ")")
	}
	eq("action", f.Action)
	if f.ActionPrefix != "" {
		b.w(" AND starts_with(action, ", b.arg(f.ActionPrefix), ")")
	}
	if len(f.Kinds) > 0 {
		ks := make([]string, len(f.Kinds))
		for i, k := range f.Kinds {
			ks[i] = string(k)
		}
		b.w(" AND kind::text = ANY(", b.arg(ks), "::text[])")
	}
	if len(f.Severities) > 0 {
		ss := make([]string, len(f.Severities))
		for i, k := range f.Severities {
			ss[i] = string(k)
		}
		b.w(" AND severity::text = ANY(", b.arg(ss), "::text[])")
	}
	eq("resource_type", f.ResourceType)
	eq("resource_id", f.ResourceID)
	eq("request_id", f.RequestID)
	eq("trace_id", f.TraceID)
	if f.StatusMin != 0 {
		b.w(" AND status >= ", b.arg(f.StatusMin))
	}
	if f.StatusMax != 0 {
		b.w(" AND status <= ", b.arg(f.StatusMax))
	}
	if f.IP.IsValid() {
		b.w(" AND ip <<= ", b.arg(f.IP.String()), "::cidr")
	}
	if f.Search != "" {
		s.searchCond(b, f.Search)
	}
	switch len(f.Changed) {
	case 0:
	case 1:
		b.w(" AND diff ? ", b.arg(f.Changed[0]))
	default:
		b.w(" AND diff ?| ", b.arg(f.Changed), "::text[]")
	}
	if !f.IncludeMeta && !IsServiceResourceType(f.ResourceType) {
		// A constant list, not a parameter: the planner sees what is excluded, and the condition
		// is a filter on the rows the tenant/time index yields.
		b.w(" AND (resource_type IS NULL OR resource_type NOT IN ('", ResourceAuditLogs, "', '", ResourceAuditTenants, "'))")
	}
}
