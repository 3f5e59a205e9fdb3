package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// matchCapture stores records with the PostgreSQL sink and keeps, for each, the Record RecordOf
// makes from its row as a sink receives it (the row a message queue carries).
type matchCapture struct {
	next core.Sink
	mu   sync.Mutex
	recs map[uuid.UUID]*store.Record
	err  error
}

func (c *matchCapture) Write(ctx context.Context, recs []*core.Record) error {
	c.mu.Lock()
	for _, r := range recs {
		b, err := core.AppendRecordRow(nil, r)
		var dec *core.Record
		if err == nil {
			dec, err = core.RecordFromRow(b)
		}
		var sr *store.Record
		if err == nil {
			sr, err = store.RecordOf(dec)
		}
		if err != nil && c.err == nil {
			c.err = err
		}
		c.recs[r.ID] = sr
	}
	c.mu.Unlock()
	return c.next.Write(ctx, recs)
}

var (
	matchTenants  = []string{"acme", "globex", "acme.eu", ""}
	matchActions  = []string{"invoice.sent", "invoice.paid", "invoice", "user.delete", "user.login", "Invoice.sent"}
	matchEmails   = []string{"ana@example.com", "Ana@Example.COM", "bob@example.com", "ÉMILE@exemple.fr", "émile@exemple.fr", "KELVIN@x.org", ""}
	matchRTypes   = []string{"invoices", "users", "", store.ResourceAuditLogs, store.ResourceAuditTenants}
	matchActorIDs = []string{"u-1", "u-2", "U-1", ""}
	matchIPs      = []string{"10.0.0.1", "10.0.1.7", "192.168.5.5", "2001:db8::1", "2001:db8:0:1::5", "::1.2.3.4", "::1", "fe80::1:0:0:1", ""}
	matchFields   = []string{"email", "name", "status", "total", "a.b"}
	matchTraces   = []string{"", "0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736"}
	matchSevs     = []core.Severity{core.SeverityInfo, core.SeverityWarning, core.SeverityError, core.SeverityCritical, ""}
	matchATypes   = []core.ActorType{core.ActorTenantUser, core.ActorService, core.ActorPlatformAdmin, core.ActorSystem, ""}
)

func pick[T any](rng *rand.Rand, list []T) T { return list[rng.IntN(len(list))] }

func matchRecord(rng *rand.Rand, base time.Time, i int) *core.Record {
	kind := pick(rng, kinds)
	r := &core.Record{
		ID:           core.NewID(),
		OccurredAt:   base.Add(time.Duration(rng.IntN(3600_000_000)) * time.Microsecond).Add(time.Duration(rng.IntN(1000))),
		Kind:         kind,
		Severity:     pick(rng, matchSevs),
		Tenant:       core.Tenant{ID: pick(rng, matchTenants)},
		Actor:        core.Actor{ID: pick(rng, matchActorIDs), Type: pick(rng, matchATypes), Email: pick(rng, matchEmails)},
		ResourceType: pick(rng, matchRTypes),
		ResourceID:   fmt.Sprint(rng.IntN(5)),
		RequestID:    fmt.Sprintf("req-%d", rng.IntN(4)),
		TraceID:      pick(rng, matchTraces),
	}
	if rng.IntN(4) > 0 {
		r.Action = pick(rng, matchActions)
	}
	if r.Tenant.ID != "" && rng.IntN(2) == 0 {
		r.Tenant.Slug = "slug-" + r.Tenant.ID
	}
	if kind == core.KindHTTP || rng.IntN(3) == 0 {
		r.Method, r.Path, r.Route = "POST", fmt.Sprintf("/api/items/%d", i), "/api/items/:id"
		r.Status = []int{0, 200, 201, 302, 404, 500, 503}[rng.IntN(7)]
		r.Duration = time.Duration(rng.IntN(5_000_000)) * time.Nanosecond
	}
	if s := pick(rng, matchIPs); s != "" {
		r.IP = netip.MustParseAddr(s)
	}
	if rng.IntN(2) == 0 {
		r.Diff = map[string]core.Change{}
		for _, f := range matchFields {
			if rng.IntN(3) == 0 {
				r.Diff[f] = core.Change{From: json.Number("1.50"), To: map[string]any{"zz": 1, "a": []any{"x", nil, true}}}
			}
		}
		r.After = map[string]any{"bb": 1e21, "a": 0.000001, "ccc": -0.0, "n": json.Number("1E+2"), "m": json.Number("12.340e1")}
	}
	if rng.IntN(2) == 0 {
		r.Metadata = map[string]any{
			"note": fmt.Sprintf("word%d", rng.IntN(9)), "html": "<b>&amp;</b>", "ctl": "a\bb\fc\x01d\te\u2028\"\\/",
			"nested": map[string]any{"longer_key": []any{1, 2.5, "é"}, "k": false},
		}
	}
	if rng.IntN(3) == 0 {
		r.Query = map[string][]string{"page": {"2"}, "q": {"a b", "<c>"}}
	}
	if rng.IntN(3) == 0 {
		r.RequestBody = &core.Body{ContentType: "application/json", Data: json.RawMessage(`{"b":1,"a":2,"b":3,"num":1.0e1,"s":"\u00e9\n"}`), Size: 60}
	}
	return r
}

func matchFilter(rng *rand.Rand, base time.Time) (store.Scope, store.Filter) {
	sc := store.AllTenantsScope()
	if t := pick(rng, matchTenants); t != "" && rng.IntN(3) > 0 {
		sc = store.TenantScope(t)
	}
	var f store.Filter
	for range 1 + rng.IntN(3) {
		switch rng.IntN(18) {
		case 0:
			f.From = base.Add(time.Duration(rng.IntN(3600)) * time.Second).Add(time.Duration(rng.IntN(1000)))
		case 1:
			f.To = base.Add(time.Duration(rng.IntN(3600)) * time.Second)
		case 2:
			f.ActorID = pick(rng, matchActorIDs[:3])
		case 3:
			f.ActorType = pick(rng, matchATypes[:4])
			if rng.IntN(3) == 0 {
				f.ActorType = core.ActorAnonymous
			}
		case 4:
			f.ActorEmail = pick(rng, []string{"ana@example.com", "ANA@example.com", "bob@example.com", "ÉMILE@exemple.fr", "émile@exemple.fr", "kelvin@x.org", "ÉMILE@EXEMPLE.FR"})
		case 5:
			f.Action = pick(rng, matchActions)
		case 6:
			f.ActionPrefix = pick(rng, []string{"invoice", "invoice.", "user.", "Inv", "x"})
		case 7:
			f.Kinds = []core.Kind{pick(rng, kinds), pick(rng, kinds)}
		case 8:
			f.Severities = []core.Severity{pick(rng, matchSevs[:4])}
		case 9:
			f.ResourceType = pick(rng, matchRTypes[:2])
			if rng.IntN(4) == 0 {
				f.ResourceType = pick(rng, store.ServiceResourceTypes)
			}
		case 10:
			f.ResourceID = fmt.Sprint(rng.IntN(5))
		case 11:
			f.RequestID = fmt.Sprintf("req-%d", rng.IntN(4))
		case 12:
			f.StatusMin = pick(rng, []int{100, 200, 300, 500})
		case 13:
			f.StatusMax = pick(rng, []int{200, 404, 599, 999})
		case 14:
			f.IP = netip.MustParsePrefix(pick(rng, []string{"10.0.0.0/8", "10.0.1.0/24", "10.0.0.1/32", "2001:db8::/32", "::/0", "0.0.0.0/0", "::/96", "1.2.3.4/32"}))
		case 15:
			f.Changed = []string{pick(rng, matchFields), pick(rng, matchFields)}
		case 16:
			f.IncludeMeta = true
		case 17:
			f.TraceID = pick(rng, matchTraces[1:])
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		f.From = time.Time{}
	}
	if f.StatusMin != 0 && f.StatusMax != 0 && f.StatusMin > f.StatusMax {
		f.StatusMax = 0
	}
	return sc, f
}

// matchListAll returns the ids List finds for sc and f, over every page.
func matchListAll(t *testing.T, st *store.Store, sc store.Scope, f store.Filter) map[uuid.UUID]*store.Record {
	t.Helper()
	out := map[uuid.UUID]*store.Record{}
	q := store.Query{Filter: f, Limit: 1000}
	for {
		p, err := st.List(context.Background(), sc, q)
		if err != nil {
			t.Fatalf("List %v %v: %v", sc, f.Values(), err)
		}
		for _, r := range p.Records {
			out[r.ID] = r
		}
		if p.NextCursor == "" {
			return out
		}
		q.Cursor = p.NextCursor
	}
}

// TestMatchAgreesWithList is the differential test of the Go filter: for random records stored
// in PostgreSQL and random filters and scopes, Filter.Match and Scope.Contains select exactly the
// records List selects, and RecordOf's record of each row encodes to the same JSON as List's.
func TestMatchAgreesWithList(t *testing.T) {
	db := pgtest.New(t)
	st, err := store.New(db.Pool, store.Options{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	capt := &matchCapture{next: core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), recs: map[uuid.UUID]*store.Record{}}
	w := core.NewWriter(capt, core.WriterOptions{BatchSize: 200, FlushInterval: 10 * time.Millisecond})
	rng := rand.New(rand.NewPCG(15, uint64(time.Now().UnixNano())))
	base := time.Now().Add(-2 * time.Hour).UTC()
	const n = 600
	for i := range n {
		if err := w.Enqueue(matchRecord(rng, base, i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Failed > 0 {
		t.Fatalf("the writer rejected %d records", s.Failed)
	}
	if capt.err != nil {
		t.Fatal(capt.err)
	}
	all := matchListAll(t, st, store.AllTenantsScope(), store.Filter{IncludeMeta: true})
	if len(all) != n || len(capt.recs) != n {
		t.Fatalf("stored %d, captured %d, want %d", len(all), len(capt.recs), n)
	}
	for id, want := range all {
		got := capt.recs[id]
		wb, _ := json.Marshal(want)
		gb, _ := json.Marshal(got)
		if !bytes.Equal(wb, gb) {
			t.Fatalf("record %s:\nList     %s\nRecordOf %s", id, wb, gb)
		}
		// Match on the row List returned agrees with Match on RecordOf's record below.
	}
	nonEmpty := 0
	for i := range 400 {
		sc, f := matchFilter(rng, base)
		v := f.Values()
		if i%2 == 0 { // half through the query parameters, as the API parses them
			var err error
			if f, err = store.ParseFilter(v); err != nil {
				t.Fatalf("filter %v: %v", v, err)
			}
		}
		if err := f.CanMatch(); err != nil {
			t.Fatalf("CanMatch(%v) = %v", v, err)
		}
		want := matchListAll(t, st, sc, f)
		if len(want) > 0 {
			nonEmpty++
		}
		for id, r := range capt.recs {
			_, inSQL := want[id]
			inGo := sc.Contains(r) && f.Match(r)
			if inSQL != inGo {
				b, _ := json.Marshal(r)
				t.Fatalf("scope %+v filter %s: SQL %v, Match %v for %s", sc, v.Encode(), inSQL, inGo, b)
			}
			if inSQL && !(sc.Contains(all[id]) && f.Match(all[id])) {
				t.Fatalf("scope %+v filter %s: Match refuses List's own record %s", sc, v.Encode(), id)
			}
		}
	}
	if nonEmpty < 100 {
		t.Fatalf("only %d of 400 filters selected anything; the test exercises too little", nonEmpty)
	}
}

// TestMatchDefaultLeavesServiceRecordsOut checks include_meta's default in Go.
func TestMatchDefaultLeavesServiceRecordsOut(t *testing.T) {
	own := &store.Record{Action: "auditlog.search", ResourceType: store.ResourceAuditLogs, TenantID: "acme"}
	app := &store.Record{Action: "invoice.sent", ResourceType: "invoices", TenantID: "acme"}
	none := &store.Record{Action: "login", TenantID: "acme"}
	cases := []struct {
		f    store.Filter
		want [3]bool
	}{
		{store.Filter{}, [3]bool{false, true, true}},
		{store.Filter{IncludeMeta: true}, [3]bool{true, true, true}},
		{store.Filter{ResourceType: store.ResourceAuditLogs}, [3]bool{true, false, false}},
		{store.Filter{ResourceType: "invoices"}, [3]bool{false, true, false}},
	}
	for _, c := range cases {
		for i, r := range []*store.Record{own, app, none} {
			if got := c.f.Match(r); got != c.want[i] {
				t.Errorf("filter %v, record %q: Match = %v, want %v", c.f.Values(), r.Action, got, c.want[i])
			}
		}
	}
	if store.TenantScope("globex").Contains(app) || !store.AllTenantsScope().Contains(app) || store.TenantScope("acme").Contains(&store.Record{}) {
		t.Error("Scope.Contains does not confine a tenant scope to its tenant")
	}
}

// TestMatchRefusesSearch: the full-text search is PostgreSQL's; Go refuses it clearly.
func TestMatchRefusesSearch(t *testing.T) {
	f := store.Filter{Search: "invoice"}
	err := f.CanMatch()
	var pe *store.ParamError
	if !errors.As(err, &pe) || pe.Param != store.ParamSearch || !errors.Is(err, store.ErrInvalidFilter) {
		t.Fatalf("CanMatch = %v, want a *ParamError on q", err)
	}
	if f.Match(&store.Record{Action: "invoice"}) {
		t.Fatal("Match with a search matched")
	}
	if err := (store.Filter{Action: "x"}).CanMatch(); err != nil {
		t.Fatal(err)
	}
}

// TestJSONB checks the jsonb text form against PostgreSQL itself.
func TestJSONB(t *testing.T) {
	db := pgtest.New(t)
	docs := []string{
		`{"b":1,"a":2,"b":3}`, `1e2`, `-0`, `-0.00`, `1.50`, `12.340e1`, `1.5e-3`, `1E+21`, `0.000001`, `1e-7`,
		`[1, "x\u0001\b\f\n\r\t\"\\\/é\u2028", null, true, {"zz": {}, "a": []}]`, `"<&>"`, `{"aa":1,"b":2,"ab":3,"é":4}`,
		`123456789012345678901234567890.123`, `-1.0e-2`, `0`, `{}`, `[]`,
	}
	for _, d := range docs {
		var pg json.RawMessage
		if err := db.Pool.QueryRow(context.Background(), `SELECT $1::jsonb`, d).Scan(&pg); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		got, err := store.JSONB([]byte(d))
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		var want bytes.Buffer
		if err := json.Compact(&want, pg); err != nil {
			t.Fatal(err)
		}
		var gotC bytes.Buffer
		if err := json.Compact(&gotC, got); err != nil {
			t.Fatalf("%s: JSONB wrote invalid JSON %s: %v", d, got, err)
		}
		if want.String() != gotC.String() {
			t.Errorf("%s: PostgreSQL %s, JSONB %s", d, want.String(), gotC.String())
		}
	}
	for _, bad := range []string{``, `{`, `1 2`, `{"a":}`} {
		if _, err := store.JSONB([]byte(bad)); err == nil {
			t.Errorf("JSONB(%q) accepted malformed JSON", bad)
		}
	}
}
