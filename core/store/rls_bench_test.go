package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core/store"
)

// BenchmarkRowLevelSecurityList measures what Options.RowLevelSecurity costs a page of 50: the
// same tenant + time range query on the owner's pool without the option, and on a reader role
// under row-level security with it (a transaction and one more round trip, and the policy's
// condition). 40 tenants of 1,000 records.
//
//	go test ./core/store -run '^$' -bench RowLevelSecurityList -benchtime 200x
func BenchmarkRowLevelSecurityList(b *testing.B) {
	e := newEnv(b, store.Options{})
	pool := readerPool(b, e.db)
	rls, err := store.New(pool, store.Options{Schema: e.db.Schema, RowLevelSecurity: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rls.Close)
	tenants := make([]string, 40)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("t%02d", i)
	}
	base := time.Now().UTC()
	recs := seed(tenants, 1000, base)
	for i := 0; i < len(recs); i += 5000 { // within the writer's queue
		e.write(b, recs[i:min(i+5000, len(recs))]...)
	}
	if _, err := e.db.Pool.Exec(context.Background(), `ANALYZE audit_logs`); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		st   *store.Store
		f    store.Filter
	}{
		{"off", e.st, store.Filter{}},
		{"on", rls, store.Filter{}},
		{"off_search", e.st, store.Filter{Search: "word3"}},
		{"on_search", rls, store.Filter{Search: "word3"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			f := c.f
			f.From, f.To = base.Add(-time.Hour), base.Add(time.Second)
			i := 0
			for b.Loop() {
				p, err := c.st.List(context.Background(), store.TenantScope(tenants[i%len(tenants)]), store.Query{Filter: f, Limit: 50})
				if err != nil || len(p.Records) != 50 {
					b.Fatalf("%d records, %v", len(p.Records), err)
				}
				i++
			}
		})
	}
}
