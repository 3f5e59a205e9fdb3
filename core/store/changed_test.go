package store_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// changedRecords are records of two tenants whose diffs touch different fields; acme's
// "password" change is masked by the writer's default redactor.
func changedRecords(base time.Time) []*core.Record {
	type spec struct {
		tenant, resource string
		fields           []string
	}
	specs := []spec{
		{"acme", "customers", []string{"email"}},
		{"acme", "customers", []string{"email", "name"}},
		{"acme", "customers", []string{"phone"}},
		{"acme", "customers", []string{"password"}},
		{"acme", "customers", nil},
		{"acme", "orders", []string{"email"}},
		{"acme", "orders", []string{"total"}},
		{"globex", "customers", []string{"phone"}},
		{"globex", "customers", []string{"name"}},
		{"globex", "orders", []string{"total"}},
		{"", "customers", []string{"email"}},
	}
	var out []*core.Record
	for i, s := range specs {
		for j := range 3 {
			r := &core.Record{
				ID: core.NewID(), Kind: core.KindUpdate, Action: s.resource + ".update",
				OccurredAt:   base.Add(-time.Duration(i*3+j) * time.Second),
				Tenant:       core.Tenant{ID: s.tenant},
				ResourceType: s.resource, ResourceID: "r-1",
				// A field named in metadata or the row images must not match: only diff keys do.
				Metadata: map[string]any{"email": "x@example.com"},
				After:    map[string]any{"email": "x@example.com"},
			}
			if s.fields != nil {
				r.Diff = map[string]core.Change{}
				for _, f := range s.fields {
					r.Diff[f] = core.Change{From: "old-" + f, To: "new-" + f}
				}
			}
			out = append(out, r)
		}
	}
	return out
}

// changedExpected lists the ids of recs in scope, of resource type rt (any when empty), whose
// diff has one of fields, newest first.
func changedExpected(recs []*core.Record, sc store.Scope, rt string, fields ...string) []uuid.UUID {
	var out []uuid.UUID
	for _, r := range recs {
		if !sc.AllTenants && r.Tenant.ID != sc.TenantID || rt != "" && r.ResourceType != rt {
			continue
		}
		for _, f := range fields {
			if _, ok := r.Diff[f]; ok {
				out = append(out, r.ID)
				break
			}
		}
	}
	return out // changedRecords is already newest first
}

func TestListChangedField(t *testing.T) {
	e := newEnv(t, store.Options{})
	recs := changedRecords(time.Now().Add(-time.Minute))
	e.write(t, recs...)
	acme, globex := store.TenantScope("acme"), store.TenantScope("globex")
	cases := []struct {
		name   string
		sc     store.Scope
		rt     string
		fields []string
		want   int
	}{
		{"one field", acme, "", []string{"email"}, 9},
		{"two fields: any", acme, "", []string{"email", "phone"}, 12},
		{"with resource_type", acme, "customers", []string{"email"}, 6},
		{"with resource_type, two fields", acme, "orders", []string{"total", "name"}, 3},
		{"redacted field", acme, "", []string{"password"}, 3},
		{"no such field", acme, "", []string{"nothing"}, 0},
		{"other tenant has no email change", globex, "", []string{"email"}, 0},
		{"other tenant's own changes", globex, "", []string{"phone", "email"}, 3},
		{"all tenants", store.AllTenantsScope(), "", []string{"email"}, 12},
	}
	for _, c := range cases {
		want := changedExpected(recs, c.sc, c.rt, c.fields...)
		if len(want) != c.want {
			t.Fatalf("%s: the fixture gives %d records, the case expects %d", c.name, len(want), c.want)
		}
		f := store.Filter{ResourceType: c.rt, Changed: c.fields}
		for _, limit := range []int{2, 100} {
			got := listAll(t, e.st, c.sc, store.Query{Filter: f, Limit: limit})
			if !slices.Equal(got, want) {
				t.Errorf("%s, pages of %d: got %d ids, want %d (first difference at %d)", c.name, limit, len(got), len(want), firstDiff(got, want))
			}
		}
		// The same filter read from query parameters.
		parsed, err := store.ParseFilter(f.Values())
		if err != nil {
			t.Fatalf("%s: ParseFilter(%v): %v", c.name, f.Values(), err)
		}
		if got := listAll(t, e.st, c.sc, store.Query{Filter: parsed}); !slices.Equal(got, want) {
			t.Errorf("%s via parameters %v: got %d ids, want %d", c.name, f.Values(), len(got), len(want))
		}
	}

	// The redacted field is found, and its values stay masked.
	p, err := e.st.List(context.Background(), acme, store.Query{Filter: store.Filter{Changed: []string{"password"}}})
	if err != nil || len(p.Records) != 3 {
		t.Fatalf("redacted field: %v, %d records", err, len(p.Records))
	}
	for _, r := range p.Records {
		if strings.Contains(string(r.Diff), "old-password") || !strings.Contains(string(r.Diff), core.Redacted) {
			t.Fatalf("redacted diff %s", r.Diff)
		}
	}
}

func TestChangedBindsCursorsAndNarrowsExportStatsAndStream(t *testing.T) {
	e := newEnv(t, store.Options{})
	recs := changedRecords(time.Now().Add(-time.Minute))
	e.write(t, recs...)
	ctx := context.Background()
	acme := store.TenantScope("acme")
	email := store.Filter{Changed: []string{"email"}}

	p, err := e.st.List(ctx, acme, store.Query{Filter: email, Limit: 2})
	if err != nil || p.NextCursor == "" {
		t.Fatalf("first page: %v, cursor %q", err, p.NextCursor)
	}
	for name, f := range map[string]store.Filter{
		"other field":  {Changed: []string{"phone"}},
		"added field":  {Changed: []string{"email", "phone"}},
		"no changed":   {},
		"prefix field": {Changed: []string{"emai"}},
	} {
		if _, err := e.st.List(ctx, acme, store.Query{Filter: f, Cursor: p.NextCursor}); !errors.Is(err, store.ErrInvalidCursor) {
			t.Errorf("cursor of changed=email with %s: got %v, want ErrInvalidCursor", name, err)
		}
	}
	// The same fields in another order or repeated are the same filter.
	if _, err := e.st.List(ctx, acme, store.Query{Filter: store.Filter{Changed: []string{"email", "email"}}, Cursor: p.NextCursor}); err != nil {
		t.Errorf("cursor with the same field given twice: %v", err)
	}

	var nd bytes.Buffer
	n, err := e.st.Export(ctx, acme, store.Filter{ResourceType: "customers", Changed: []string{"email", "password"}},
		store.ExportOptions{Format: store.FormatNDJSON}, &nd)
	if err != nil {
		t.Fatal(err)
	}
	want := changedExpected(recs, acme, "customers", "email", "password")
	var got []uuid.UUID
	sc := bufio.NewScanner(&nd)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct{ ID uuid.UUID }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		got = append(got, r.ID)
	}
	if n != int64(len(want)) || !slices.Equal(got, want) {
		t.Fatalf("export: %d rows %v, want %v", n, got, want)
	}

	stats, err := e.st.Stats(ctx, acme, store.StatsQuery{Filter: store.Filter{From: time.Now().Add(-time.Hour), Changed: []string{"email"}}})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Total != 9 || len(stats.ByResourceType) != 2 {
		t.Fatalf("stats of changed=email: total %d, by resource type %v", stats.Total, stats.ByResourceType)
	}

	// A live stream applies the filter like a page does: of acme's new records, it delivers
	// those whose diff has email or phone, and nothing of globex's. A matching marker written
	// last arrives last, so nothing else was delivered before it.
	sub, err := e.st.Subscribe(ctx, acme, store.Filter{Changed: []string{"phone", "email"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	w := otherWriter(t, e)
	live := changedRecords(time.Now().Add(-time.Second))
	for _, r := range live {
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	mark := &core.Record{Kind: core.KindUpdate, Action: "marker", Tenant: core.Tenant{ID: "acme"},
		Diff: map[string]core.Change{"phone": {From: "1", To: "2"}}}
	if err := w.Enqueue(mark); err != nil {
		t.Fatal(err)
	}
	wantLive := append(changedExpected(live, acme, "", "email", "phone"), mark.ID)
	gotLive := receive(t, sub, len(wantLive))
	if last := gotLive[len(gotLive)-1]; last.ID != mark.ID {
		t.Fatalf("unexpected record before the marker: %+v", last)
	}
	seen := map[uuid.UUID]bool{}
	for _, r := range gotLive {
		if seen[r.ID] {
			t.Fatalf("record %s delivered twice", r.ID)
		}
		seen[r.ID] = true
	}
	for _, id := range wantLive {
		if !seen[id] {
			t.Fatalf("record %s not streamed", id)
		}
	}
}

func TestParseChanged(t *testing.T) {
	long := strings.Repeat("a", 129)
	var names []string
	for i := range 21 {
		names = append(names, "f"+string(rune('a'+i)))
	}
	many := strings.Join(names, ",")
	for _, raw := range []string{
		"changed=", "changed=,", "changed=email,,phone", "changed=email&changed=phone", "changed=e%20mail",
		"changed=a%3Bb", "changed=%ff", "changed=a%00", "changed=" + long, "changed=" + many, "changed=a'b",
		"changed=a%22b", "changed=a%0Ab",
	} {
		v, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		_, err = store.ParseFilter(v)
		var pe *store.ParamError
		if !errors.As(err, &pe) || pe.Param != store.ParamChanged || !errors.Is(err, store.ErrInvalidFilter) {
			t.Errorf("%q: got %v, want a *ParamError for changed", raw, err)
		}
	}
	if err := (store.Filter{Changed: []string{"ok", "not ok"}}).Validate(); err == nil {
		t.Error("Validate accepted a field name with a space")
	}
	v, _ := url.ParseQuery("changed=phone,%20email,email,billing.address,Straße,$id,a:b,x@y,a/b,a-b," + strings.Repeat("z", 128))
	f, err := store.ParseFilter(v)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"$id", "Straße", "a-b", "a/b", "a:b", "billing.address", "email", "phone", "x@y", strings.Repeat("z", 128)}
	if !slices.Equal(f.Changed, want) {
		t.Fatalf("parsed %q, want %q", f.Changed, want)
	}
	again, err := store.ParseFilter(f.Values())
	if err != nil || !slices.Equal(again.Changed, want) {
		t.Fatalf("round trip: %v, %q", err, again.Changed)
	}
	if got := f.Map()[store.ParamChanged]; got != strings.Join(want, ",") {
		t.Fatalf("Map: %v", got)
	}
}
