package ginaudit_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/ginaudit"
)

// changed= narrows pages, exports and statistics to the records whose diff has one of the named
// fields, in the caller's tenant only; cursors are bound to it; bad names are 400 JSON errors.
func TestAPIChangedFilter(t *testing.T) {
	e := apiNewEnv(t, nil)
	user := apiToken(t, "u", core.ActorTenantUser, "acme")
	userB := apiToken(t, "u", core.ActorTenantUser, "globex")
	base := time.Now().Add(-time.Hour)
	type spec struct {
		tenant, resource string
		fields           []string
	}
	var recs []*core.Record
	for i, s := range []spec{
		{"acme", "customers", []string{"email"}}, {"acme", "customers", []string{"email", "name"}},
		{"acme", "customers", []string{"phone"}}, {"acme", "customers", []string{"password"}},
		{"acme", "customers", nil}, {"acme", "orders", []string{"email"}}, {"acme", "orders", []string{"total"}},
		{"globex", "customers", []string{"phone"}}, {"globex", "customers", []string{"name"}},
	} {
		for j := range 2 {
			r := &core.Record{Kind: core.KindUpdate, Action: s.resource + ".update", Tenant: core.Tenant{ID: s.tenant},
				ResourceType: s.resource, ResourceID: "r", OccurredAt: base.Add(-time.Duration(i*2+j) * time.Second),
				Metadata: map[string]any{"email": "not a diff key"}}
			if s.fields != nil {
				r.Diff = map[string]core.Change{}
				for _, f := range s.fields {
					r.Diff[f] = core.Change{From: "old-" + f, To: "new-" + f}
				}
			}
			recs = append(recs, r)
		}
	}
	e.write(recs...)
	// want lists the ids of tenant's records of resource type rt (any when empty) whose diff
	// has one of fields, newest first as written.
	want := func(tenant, rt string, fields ...string) []string {
		var out []string
		for _, r := range recs {
			if r.Tenant.ID != tenant || rt != "" && r.ResourceType != rt {
				continue
			}
			for _, f := range fields {
				if _, ok := r.Diff[f]; ok {
					out = append(out, r.ID.String())
					break
				}
			}
		}
		return out
	}
	list := func(tok, query string) []string {
		t.Helper()
		var ids []string
		path := "/logs?limit=3&" + query
		for {
			r := e.do(http.MethodGet, path, tok, nil)
			if r.status != 200 {
				t.Fatalf("GET %s: %d %s", path, r.status, r.body)
			}
			var page struct {
				Logs []struct {
					ID       string          `json:"id"`
					TenantID string          `json:"tenant_id"`
					Diff     json.RawMessage `json:"diff"`
				} `json:"logs"`
				NextCursor string `json:"next_cursor"`
			}
			r.decode(t, &page)
			for _, l := range page.Logs {
				if strings.Contains(string(l.Diff), "old-password") {
					t.Fatalf("GET %s revealed a redacted value: %s", path, l.Diff)
				}
				ids = append(ids, l.ID)
			}
			if page.NextCursor == "" {
				return ids
			}
			path = "/logs?limit=3&" + query + "&cursor=" + page.NextCursor
		}
	}
	cases := []struct {
		tok, tenant, query, rt string
		fields                 []string
		n                      int
	}{
		{user, "acme", "changed=email", "", []string{"email"}, 6},
		{user, "acme", "changed=phone,email", "", []string{"email", "phone"}, 8},
		{user, "acme", "changed=email&resource_type=customers", "customers", []string{"email"}, 4},
		{user, "acme", "changed=password", "", []string{"password"}, 2},
		{userB, "globex", "changed=email", "", []string{"email"}, 0},
		{userB, "globex", "changed=email,phone", "", []string{"email", "phone"}, 2},
	}
	for _, c := range cases {
		w := want(c.tenant, c.rt, c.fields...)
		if len(w) != c.n {
			t.Fatalf("%s as %s: the fixture gives %d records, the case expects %d", c.query, c.tenant, len(w), c.n)
		}
		if got := list(c.tok, c.query); !slices.Equal(got, w) {
			t.Errorf("GET /logs?%s as %s: got %v, want %v", c.query, c.tenant, got, w)
		}
		r := e.do(http.MethodGet, "/logs/export?format=ndjson&"+c.query, c.tok, nil)
		if r.status != 200 {
			t.Fatalf("export %s: %d %s", c.query, r.status, r.body)
		}
		var got []string
		for line := range strings.SplitSeq(strings.TrimSuffix(string(r.body), "\n"), "\n") {
			if line == "" {
				continue
			}
			var rec struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("export %s: line %q: %v", c.query, line, err)
			}
			got = append(got, rec.ID)
		}
		if !slices.Equal(got, w) {
			t.Errorf("export %s as %s: got %v, want %v", c.query, c.tenant, got, w)
		}
		var st struct {
			Total int `json:"total"`
		}
		r = e.do(http.MethodGet, "/logs/stats?from="+base.Add(-time.Hour).UTC().Format(time.RFC3339)+"&"+c.query, c.tok, nil)
		if r.decode(t, &st); r.status != 200 || st.Total != c.n {
			t.Errorf("stats %s as %s: %d, total %d, want %d", c.query, c.tenant, r.status, st.Total, c.n)
		}
	}

	// A cursor of changed=email is refused with another field list.
	var page struct {
		NextCursor string `json:"next_cursor"`
	}
	e.do(http.MethodGet, "/logs?limit=1&changed=email", user, nil).decode(t, &page)
	if page.NextCursor == "" {
		t.Fatal("no cursor")
	}
	for _, q := range []string{"changed=phone", "changed=email,phone", "changed=email&resource_type=customers", ""} {
		r := e.do(http.MethodGet, "/logs?limit=1&cursor="+page.NextCursor+"&"+q, user, nil)
		if r.status != 400 || r.errCode() != "invalid_cursor" {
			t.Errorf("cursor of changed=email with %q: %d %s", q, r.status, r.body)
		}
	}
	if r := e.do(http.MethodGet, "/logs?limit=1&cursor="+page.NextCursor+"&changed=email,email", user, nil); r.status != 200 {
		t.Errorf("cursor with the same field repeated: %d %s", r.status, r.body)
	}

	for _, q := range []string{"changed=e%20mail", "changed=,", "changed=a,,b", "changed=a%3Bb", "changed=a&changed=b",
		"changed=" + strings.Repeat("f", 129), "changed=a%27b"} {
		for _, path := range []string{"/logs?", "/logs/export?format=csv&", "/logs/stats?", "/logs/stream?"} {
			r := e.do(http.MethodGet, path+q, user, nil)
			var eb struct {
				Error struct{ Code, Param, Message string }
			}
			if err := json.Unmarshal(r.body, &eb); err != nil || r.status != 400 || eb.Error.Code != "invalid_parameter" ||
				eb.Error.Param != "changed" || !strings.HasPrefix(eb.Error.Message, "changed: ") {
				t.Errorf("GET %s: %d %s", apiTruncateTest(path+q), r.status, apiTruncateTest(string(r.body)))
			}
		}
	}

	// The search is itself recorded with the field list among its filters.
	e.flush()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs
		WHERE action = 'auditlog.search' AND tenant_id = 'acme' AND metadata->'filters'->>'changed' = 'email,phone'`).Scan(&n); err != nil || n == 0 {
		t.Fatalf("search with changed= recorded %d times: %v", n, err)
	}
}

// A live stream with changed= delivers the tenant's new records whose diff has one of the
// fields, and nothing else: a matching marker written last is the last event.
func TestAPIChangedStream(t *testing.T) {
	e := apiNewEnv(t, func(o *ginaudit.APIOptions) { o.MaxStreams = 10 })
	user := apiToken(t, "u", core.ActorTenantUser, "acme")
	s := e.openSSE(user, map[string][]string{"changed": {"email,phone"}})
	defer s.close()
	mk := func(tenant string, fields ...string) *core.Record {
		r := &core.Record{Kind: core.KindUpdate, Action: "customer.update", Tenant: core.Tenant{ID: tenant}}
		if fields != nil {
			r.Diff = map[string]core.Change{}
			for _, f := range fields {
				r.Diff[f] = core.Change{From: "a", To: "b"}
			}
		}
		return r
	}
	recs := []*core.Record{
		mk("acme", "email"), mk("acme", "name"), mk("acme"), mk("globex", "email"), mk("acme", "phone", "name"),
		mk("acme", "total"), mk("globex", "phone"),
	}
	e.write(recs...)
	mark := mk("acme", "email")
	e.write(mark)
	wantIDs := []string{recs[0].ID.String(), recs[4].ID.String(), mark.ID.String()}
	var got []string
	for len(got) < len(wantIDs) {
		ev := s.next(t)
		var rec store.Record
		if err := json.Unmarshal([]byte(ev.data), &rec); err != nil || ev.name != "log" {
			t.Fatalf("event %+v: %v", ev, err)
		}
		got = append(got, rec.ID.String())
	}
	slices.Sort(got[:2])
	slices.Sort(wantIDs[:2])
	if !slices.Equal(got, wantIDs) {
		t.Fatalf("stream with changed=email,phone: got %v, want %v", got, wantIDs)
	}
}
