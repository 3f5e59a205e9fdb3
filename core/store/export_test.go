package store_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/chaintest"
)

func TestExportMatchesList(t *testing.T) {
	e := newEnv(t, store.Options{})
	recs := seed([]string{"acme", "globex"}, 40, time.Now())
	tricky := &core.Record{
		Kind: core.KindCustom, Action: "=HYPERLINK(\"http://evil\",\"x\")", Tenant: core.Tenant{ID: "acme"},
		Actor:        core.Actor{ID: "+1 555", Email: "@SUM(A1)"},
		ResourceType: "-2+3", ResourceID: "line1\nline2, \"quoted\"", Path: "\t/tab", UserAgent: "\rcr",
		Metadata: map[string]any{"s": "quote \" backslash \\ newline \n tab \t ctrl \u0001 sep \u2028 é 日本"},
		Before:   map[string]any{"n": -5},
	}
	recs = append(recs, tricky)
	e.write(t, recs...)
	ctx := context.Background()

	for _, sc := range []store.Scope{store.TenantScope("acme"), store.AllTenantsScope()} {
		for _, order := range []store.Order{store.NewestFirst, store.OldestFirst, ""} {
			f := store.Filter{}
			var all []*store.Record
			q := store.Query{Filter: f, Order: order, Limit: 1000}
			for {
				p, err := e.st.List(ctx, sc, q)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, p.Records...)
				if p.NextCursor == "" {
					break
				}
				q.Cursor = p.NextCursor
			}
			byID := map[string]*store.Record{}
			for _, r := range all {
				byID[r.ID.String()] = r
			}

			var nd bytes.Buffer
			n, err := e.st.Export(ctx, sc, f, store.ExportOptions{Format: store.FormatNDJSON, Order: order}, &nd)
			if err != nil {
				t.Fatal(err)
			}
			if int(n) != len(all) {
				t.Fatalf("%s %s: ndjson exported %d, list has %d", sc, order, n, len(all))
			}
			sc2 := bufio.NewScanner(&nd)
			sc2.Buffer(nil, 1<<20)
			lines := 0
			var prevTenant string
			for sc2.Scan() {
				lines++
				line := sc2.Bytes()
				if !json.Valid(line) {
					t.Fatalf("invalid JSON line: %s", line)
				}
				var fromExport, fromList map[string]any
				_ = json.Unmarshal(line, &fromExport)
				id, _ := fromExport["id"].(string)
				lr := byID[id]
				if lr == nil {
					t.Fatalf("exported id %s not listed", id)
				}
				b, _ := json.Marshal(lr)
				_ = json.Unmarshal(b, &fromList)
				if !reflect.DeepEqual(fromExport, fromList) {
					t.Fatalf("export and list differ:\nexport %v\nlist   %v", fromExport, fromList)
				}
				if sc.AllTenants && order == store.NewestFirst {
					tn, _ := fromExport["tenant_id"].(string)
					if tn != prevTenant && tn != "" && prevTenant != "" && tn < prevTenant {
						t.Fatalf("export across tenants is not grouped by tenant: %q after %q", tn, prevTenant)
					}
					prevTenant = tn
				}
			}
			if lines != len(all) {
				t.Fatalf("%d lines, want %d", lines, len(all))
			}

			var cs bytes.Buffer
			if _, err := e.st.Export(ctx, sc, f, store.ExportOptions{Format: store.FormatCSV, Order: order}, &cs); err != nil {
				t.Fatal(err)
			}
			rd := csv.NewReader(&cs)
			rows, err := rd.ReadAll()
			if err != nil {
				t.Fatalf("CSV does not parse: %v", err)
			}
			if !reflect.DeepEqual(rows[0], store.ExportColumns) || len(rows) != len(all)+1 {
				t.Fatalf("CSV header %v, %d rows", rows[0], len(rows))
			}
			for _, row := range rows[1:] {
				for i, cell := range row {
					if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
						t.Fatalf("column %s starts with a formula character: %q", store.ExportColumns[i], cell)
					}
				}
				if row[0] == tricky.ID.String() {
					col := func(name string) string {
						for i, c := range store.ExportColumns {
							if c == name {
								return row[i]
							}
						}
						return ""
					}
					if col("action") != `'=HYPERLINK("http://evil","x")` || col("actor_id") != "'+1 555" ||
						col("resource_id") != "line1\nline2, \"quoted\"" || col("path") != "'\t/tab" ||
						col("before") != `{"n": -5}` || col("occurred_at") == "" {
						t.Fatalf("tricky row exported as %q", row)
					}
				}
			}
		}
	}
}

func TestExportFailsBeforeWriting(t *testing.T) {
	e := newEnv(t, store.Options{})
	e.write(t, seed([]string{"acme"}, 5, time.Now())...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if _, err := e.st.Export(ctx, store.TenantScope("acme"), store.Filter{}, store.ExportOptions{Format: store.FormatCSV}, &buf); err == nil || buf.Len() != 0 {
		t.Fatalf("cancelled export: err %v, %d bytes written", err, buf.Len())
	}
	if _, err := e.st.Export(context.Background(), store.TenantScope("acme"), store.Filter{}, store.ExportOptions{Format: "xml"}, &buf); !errors.Is(err, store.ErrInvalidFilter) {
		t.Fatalf("unknown format: %v", err)
	}
	// A writer that fails is reported as such.
	_, err := e.st.Export(context.Background(), store.TenantScope("acme"), store.Filter{}, store.ExportOptions{Format: store.FormatNDJSON}, failingWriter{})
	if !errors.Is(err, store.ErrExportWrite) {
		t.Fatalf("failing writer: %v", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("gone") }

func TestStats(t *testing.T) {
	e := newEnv(t, store.Options{})
	// day is yesterday's midnight, so that every record below (the latest at day+1min) is in
	// the past whatever the time of day: the default range ends now.
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
	var recs []*core.Record
	add := func(n int, at time.Time, action string, sev core.Severity, actor string, tenant string) {
		for range n {
			recs = append(recs, &core.Record{Kind: core.KindCustom, Action: action, Severity: sev, OccurredAt: at,
				Actor: core.Actor{ID: actor}, Tenant: core.Tenant{ID: tenant}, ResourceType: "invoices"})
		}
	}
	add(5, day.Add(-47*time.Hour), "a.one", core.SeverityInfo, "u1", "acme")
	add(3, day.Add(-23*time.Hour), "a.two", core.SeverityError, "u2", "acme")
	add(2, day.Add(time.Minute), "a.one", core.SeverityInfo, "", "acme")
	add(7, day.Add(time.Minute), "a.one", core.SeverityInfo, "u9", "globex")
	e.write(t, recs...)
	ctx := context.Background()
	st, err := e.st.Stats(ctx, store.TenantScope("acme"), store.StatsQuery{Filter: store.Filter{From: day.Add(-72 * time.Hour), To: day.Add(24 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != 10 || len(st.Buckets) != 4 {
		t.Fatalf("total %d, %d buckets", st.Total, len(st.Buckets))
	}
	wantBuckets := []int64{0, 5, 3, 2}
	for i, b := range st.Buckets {
		if b.Count != wantBuckets[i] || !b.Start.Equal(day.Add(time.Duration(i-3)*24*time.Hour)) {
			t.Fatalf("bucket %d: %+v", i, b)
		}
	}
	eq := func(name string, got []store.Count, want ...store.Count) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: got %v, want %v", name, got, want)
		}
	}
	eq("action", st.ByAction, store.Count{Value: "a.one", Count: 7}, store.Count{Value: "a.two", Count: 3})
	eq("severity", st.BySeverity, store.Count{Value: "info", Count: 7}, store.Count{Value: "error", Count: 3})
	eq("actor", st.ByActor, store.Count{Value: "u1", Count: 5}, store.Count{Value: "u2", Count: 3}, store.Count{Value: "", Count: 2})
	eq("kind", st.ByKind, store.Count{Value: "custom", Count: 10})
	eq("resource", st.ByResourceType, store.Count{Value: "invoices", Count: 10})

	st, err = e.st.Stats(ctx, store.AllTenantsScope(), store.StatsQuery{Bucket: store.BucketHour, Top: 1,
		Filter: store.Filter{From: day, To: day.Add(2 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != 9 || len(st.Buckets) != 2 || st.Buckets[0].Count != 9 || len(st.ByActor) != 1 || st.ByActor[0].Value != "u9" {
		t.Fatalf("hourly across tenants: %+v", st)
	}
	// Defaults: the last 30 days up to now.
	st, err = e.st.Stats(ctx, store.TenantScope("acme"), store.StatsQuery{})
	if err != nil || st.Total != 10 || len(st.Buckets) != 31 && len(st.Buckets) != 30 {
		t.Fatalf("default range: %v, total %d, %d buckets", err, st.Total, len(st.Buckets))
	}
	if _, err := e.st.Stats(ctx, store.TenantScope("acme"), store.StatsQuery{Bucket: store.BucketHour,
		Filter: store.Filter{From: day.AddDate(-5, 0, 0), To: day}}); !errors.Is(err, store.ErrInvalidFilter) {
		t.Fatalf("too many buckets: %v", err)
	}
}

// TestExportChain: a chain export's lines are the canonical fields, which hash to row_hash. The
// records are of version 2 (chaintest's), whose encoding has 32 fields; version 3 records, with
// 34, are exported and verified in core's TestTraceIsStoredFilteredAndChained.
func TestExportChain(t *testing.T) {
	e := newEnv(t, store.Options{})
	ctx := context.Background()
	if _, err := chaintest.Append(ctx, e.db.Pool, "acme", 12); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := e.st.Export(ctx, store.TenantScope("acme"), store.Filter{}, store.ExportOptions{Format: store.FormatChain, FromSeq: 3, ToSeq: 10}, &buf)
	if err != nil || n != 8 {
		t.Fatalf("%d records, %v", n, err)
	}
	for i, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		var rec struct {
			Seq     int64     `json:"seq"`
			Fields  []*string `json:"fields"`
			RowHash string    `json:"row_hash"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Seq != int64(i+3) || len(rec.Fields) != core.ChainFieldCountV2 || len(rec.RowHash) != 64 || len(*rec.Fields[2]) != 64 || rec.Fields[12] != nil {
			t.Fatalf("line %d: %s", i, line)
		}
		// The fields hash to the row_hash, as docs/chain.md specifies.
		var f core.ChainFields
		for j, v := range rec.Fields {
			if v != nil {
				f[j] = []byte(*v)
			}
		}
		f[2], _ = hex.DecodeString(*rec.Fields[2])
		if h := core.ChainHash(&f); hex.EncodeToString(h[:]) != rec.RowHash {
			t.Fatalf("line %d does not hash to its row_hash", i)
		}
	}
	if _, err := e.st.Export(ctx, store.TenantScope("acme"), store.Filter{Action: "x"}, store.ExportOptions{Format: store.FormatChain}, &buf); !errors.Is(err, store.ErrInvalidFilter) {
		t.Errorf("a filtered chain export: %v", err)
	}
	if f, err := store.ParseFormat("chain"); f != store.FormatChain || err != nil {
		t.Errorf("ParseFormat(chain) = %q, %v", f, err)
	}
}
