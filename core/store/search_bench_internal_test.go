package store

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"
)

var searchBenchSchema = flag.String("searchbench.schema", "", "BenchmarkSearchPages: schema of a data set made by loadgen load (for example search_1m)")

// BenchmarkSearchPages measures first pages of 50 records of full-text search (q) in a tenant's
// last 7 days on a data set made by loadgen, for a common word (one of the five values of
// metadata.feature, each on a fifth of the records), a rare one (a number below 5000) and a word
// no record has, 200 pages each on random tenants, and prints p50, p95 and max.
//
//	loadgen load -schema search_1m -rows 1000000 -tenants 100 -days 30
//	go test ./core/store -run '^$' -bench SearchPages -benchtime 1x -searchbench.schema search_1m
func BenchmarkSearchPages(b *testing.B) {
	if *searchBenchSchema == "" {
		b.Skip("needs -searchbench.schema, the schema of a loadgen data set")
	}
	for b.Loop() {
		benchSearchPages(b, *searchBenchSchema)
	}
}

func benchSearchPages(b *testing.B, schemaName string) {
	ctx := context.Background()
	s, pool := loadgenStore(b, schemaName)
	var last time.Time
	if err := pool.QueryRow(ctx, `SELECT max(occurred_at) FROM `+s.logs).Scan(&last); err != nil {
		b.Fatal(err)
	}
	to := last.Add(time.Minute)
	from := to.AddDate(0, 0, -7)
	rng := rand.New(rand.NewPCG(1, 2))
	features := []string{"billing", "crm", "reports", "admin", "search"}
	words := []struct {
		name string
		word func() string
	}{
		{"common", func() string { return features[rng.IntN(len(features))] }},
		{"rare", func() string { return strconv.Itoa(rng.IntN(5000)) }},
		{"none", func() string { return "zq" + strconv.Itoa(rng.IntN(5000)) }},
	}
	const limit, requests, warm = 50, 200, 10
	for _, w := range words {
		var lat []time.Duration
		var got int
		for i := range requests + warm {
			sc := TenantScope(fmt.Sprintf("tenant-%03d", rng.IntN(100)))
			t0 := time.Now()
			p, err := s.List(ctx, sc, Query{Filter: Filter{From: from, To: to, Search: w.word()}, Limit: limit})
			if err != nil {
				b.Fatal(err)
			}
			if i >= warm {
				lat = append(lat, time.Since(t0))
				got += len(p.Records)
			}
		}
		slices.Sort(lat)
		pct := func(p int) string { return fmt.Sprintf("%.2f ms", float64(lat[(len(lat)-1)*p/100])/1e6) }
		fmt.Printf("%-6s word, %d pages, %.1f records per page: p50 %s p95 %s max %s\n", w.name, requests, float64(got)/requests, pct(50), pct(95), pct(100))
	}
}
