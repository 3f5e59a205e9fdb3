package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/ginaudit"
)

type benchOptions struct {
	pages                            int
	skipPages, skipStats, skipExport bool
}

type benchEnv struct {
	base   string
	client *http.Client
	secret string
	tokens map[string]string
}

func (b *benchEnv) token(sub string, typ core.ActorType, tenant string) string {
	key := sub + "/" + tenant
	if t, ok := b.tokens[key]; ok {
		return t
	}
	c := jwt.MapClaims{"sub": sub, "actor_type": string(typ), "exp": time.Now().Add(24 * time.Hour).Unix()}
	if tenant != "" {
		c["tenant_id"] = tenant
	}
	t, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(b.secret))
	b.tokens[key] = t
	return t
}

// get performs one request and returns its latency, status and body size, discarding the body
// into w.
func (b *benchEnv) get(path, token string, w io.Writer) (time.Duration, int, int64, error) {
	req, _ := http.NewRequest(http.MethodGet, b.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	res, err := b.client.Do(req)
	if err != nil {
		return 0, 0, 0, err
	}
	n, err := io.Copy(w, res.Body)
	res.Body.Close()
	return time.Since(start), res.StatusCode, n, err
}

func bench(ctx context.Context, dbURL, name string, o benchOptions) error {
	pool, err := connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	var rows int64
	var first, last time.Time
	var tenants int
	table := `"` + name + `".audit_logs`
	if err := pool.QueryRow(ctx, `SELECT count(*), min(occurred_at), max(occurred_at), count(DISTINCT tenant_id) FROM `+table).Scan(&rows, &first, &last, &tenants); err != nil {
		return fmt.Errorf("reading the data set (load it first): %w", err)
	}
	fmt.Printf("data set: schema %s, %d rows, %d tenants, %s to %s\n\n", name, rows, tenants, first.UTC().Format(time.DateTime), last.UTC().Format(time.DateTime))

	st, err := store.New(pool, store.Options{Schema: name})
	if err != nil {
		return err
	}
	defer st.Close()
	w := core.NewWriter(core.NewPostgresSink(pool, core.PostgresSinkOptions{Schema: name}), core.WriterOptions{Logger: slog.New(slog.DiscardHandler)})
	defer w.Close(context.Background())
	b := &benchEnv{secret: randomHex(32), tokens: map[string]string{}}
	v, err := ginaudit.NewVerifier(ctx, core.JWTConfig{Secret: b.secret}, nil)
	if err != nil {
		return err
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	if err := ginaudit.MountAPI(r.Group("/api/v1"), st, ginaudit.APIOptions{Verifier: v, Writer: w, RateLimit: -1, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		return err
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	b.base = srv.URL + "/api/v1"
	b.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}

	rng := rand.New(rand.NewPCG(7, 11))
	tenant := func() (int, string) { t := rng.IntN(tenants); return t, tenantID(t) }
	to := last.Add(time.Minute).UTC()
	from7 := to.AddDate(0, 0, -7)
	window := "from=" + url.QueryEscape(from7.Format(time.RFC3339)) + "&to=" + url.QueryEscape(to.Format(time.RFC3339))

	// Resource filters use (tenant, type, id) triples that exist.
	type triple struct {
		tenant   int
		res, rid string
	}
	var samples []triple
	// A 1% sample of the pages is plenty for a large table; a small one may yield no page at all.
	for _, sample := range []string{" TABLESAMPLE SYSTEM (1)", ""} {
		srows, err := pool.Query(ctx, `SELECT tenant_id, resource_type, resource_id FROM `+table+sample+
			` WHERE resource_id IS NOT NULL AND resource_type <> 'audit_logs' AND occurred_at >= $1 LIMIT 1000`, from7)
		if err != nil {
			return err
		}
		for srows.Next() {
			var tid string
			var tr triple
			if err := srows.Scan(&tid, &tr.res, &tr.rid); err != nil {
				return err
			}
			if _, err := fmt.Sscanf(tid, "tenant-%d", &tr.tenant); err == nil {
				samples = append(samples, tr)
			}
		}
		srows.Close()
		if len(samples) > 0 {
			break
		}
	}
	if len(samples) == 0 {
		return fmt.Errorf("no resource samples in the last 7 days")
	}

	type filter struct {
		name string
		q    func() (int, string)
	}
	anyTenant := func(q func(t int) string) func() (int, string) {
		return func() (int, string) { t, _ := tenant(); return t, q(t) }
	}
	filters := []filter{
		{"actor_id", anyTenant(func(t int) string { return "actor_id=" + actorID(t, rng.IntN(actorsPerTenant-3)) })},
		{"action", anyTenant(func(int) string { return "action=" + resourceTypes[rng.IntN(len(resourceTypes))] + ".update" })},
		{"action_prefix", anyTenant(func(int) string { return "action_prefix=" + resourceTypes[rng.IntN(len(resourceTypes))] + "." })},
		{"resource", func() (int, string) {
			tr := samples[rng.IntN(len(samples))]
			return tr.tenant, "resource_type=" + tr.res + "&resource_id=" + tr.rid
		}},
		{"kind", anyTenant(func(int) string { return "kind=delete" })},
		{"severity", anyTenant(func(int) string { return "severity=error,critical" })},
		{"status_min", anyTenant(func(int) string { return "status_min=500" })},
		{"ip", anyTenant(func(t int) string { return "ip=" + url.QueryEscape(fmt.Sprintf("10.%d.0.0/24", t)) })},
		{"q_common", anyTenant(func(int) string { return "q=" + features[rng.IntN(len(features))] })},
		{"q_rare", anyTenant(func(int) string { return "q=" + strconv.Itoa(rng.IntN(5000)) })},
	}
	if o.skipPages {
		filters = nil
	} else {
		fmt.Printf("## Filtered pages: tenant + 7-day range + one filter, limit 50, %d requests per filter (after 10 to warm up)\n\n", o.pages)
		fmt.Println("| filter | p50 | p95 | p99 | max | records per page (mean) |")
		fmt.Println("|---|---:|---:|---:|---:|---:|")
	}
	var all []time.Duration
	for _, f := range filters {
		var lat []time.Duration
		var got int
		for i := range o.pages + 10 {
			t, q := f.q()
			tid := tenantID(t)
			path := "/logs?" + window + "&limit=50&" + q
			var body bytes.Buffer
			d, status, _, err := b.get(path, b.token(actorID(t, 0), core.ActorTenantUser, tid), &body)
			if err != nil || status != 200 {
				return fmt.Errorf("%s: %d %v %s", path, status, err, body.String())
			}
			if i >= 10 {
				lat = append(lat, d)
				got += strings.Count(body.String(), `{"id":"`)
			}
		}
		all = append(all, lat...)
		p := percentiles(lat)
		fmt.Printf("| %s | %s | %s | %s | %s | %.1f |\n", f.name, ms(p[50]), ms(p[95]), ms(p[99]), ms(p[100]), float64(got)/float64(len(lat)))
	}
	if !o.skipPages {
		p := percentiles(all)
		fmt.Printf("| **all filters** | %s | **%s** | %s | %s | |\n\n", ms(p[50]), ms(p[95]), ms(p[99]), ms(p[100]))
	}
	if !o.skipStats {
		if err := benchStats(b, rng, tenants, rows, to); err != nil {
			return err
		}
	}
	if o.skipExport {
		return nil
	}
	return benchExport(b)
}

func benchStats(b *benchEnv, rng *rand.Rand, tenants int, rows int64, to time.Time) error {
	tenant := func() (int, string) { t := rng.IntN(tenants); return t, tenantID(t) }
	fmt.Println("## Stats over 30 days (GET /logs/stats)")
	fmt.Println()
	fmt.Println("| scope | bucket | requests | p50 | p95 | max |")
	fmt.Println("|---|---|---:|---:|---:|---:|")
	from30 := "from=" + url.QueryEscape(to.AddDate(0, 0, -30).Format(time.RFC3339)) + "&to=" + url.QueryEscape(to.Format(time.RFC3339))
	for _, bucket := range []string{"day", "hour"} {
		var lat []time.Duration
		for i := range 60 {
			t, tid := tenant()
			d, status, _, err := b.get("/logs/stats?"+from30+"&bucket="+bucket, b.token(actorID(t, 0), core.ActorTenantUser, tid), io.Discard)
			if err != nil || status != 200 {
				return fmt.Errorf("stats: %d %v", status, err)
			}
			if i >= 10 {
				lat = append(lat, d)
			}
		}
		p := percentiles(lat)
		fmt.Printf("| one tenant | %s | %d | %s | %s | %s |\n", bucket, len(lat), ms(p[50]), ms(p[95]), ms(p[100]))
	}
	admin := b.token("root", core.ActorPlatformAdmin, "")
	var lat []time.Duration
	for range 5 {
		d, status, _, err := b.get("/logs/stats?"+from30+"&bucket=day", admin, io.Discard)
		if err != nil || status != 200 {
			return fmt.Errorf("stats across tenants: %d %v", status, err)
		}
		lat = append(lat, d)
	}
	p := percentiles(lat)
	fmt.Printf("| all tenants (%d rows) | day | %d | %s | %s | %s |\n\n", rows, len(lat), ms(p[50]), ms(p[95]), ms(p[100]))
	return nil
}

func benchExport(b *benchEnv) error {
	admin := b.token("root", core.ActorPlatformAdmin, "")
	fmt.Println("## Export of every row (platform admin, GET /logs/export, body read and discarded by the client)")
	fmt.Println()
	fmt.Println("| format | order | rows | bytes | seconds | rows/s | MB/s | peak Go heap in use | peak RSS | GCs |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, run := range []struct{ format, sort string }{{"ndjson", ""}, {"csv", ""}, {"ndjson", "newest"}} {
		format := run.format
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		stop := make(chan struct{})
		var peakHeap, peakRSS uint64
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				peakHeap = max(peakHeap, m.HeapInuse)
				peakRSS = max(peakRSS, rss())
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		}()
		lc := &lineCounter{}
		path := "/logs/export?format=" + format
		order := "storage"
		if run.sort != "" {
			path += "&sort=" + run.sort
			order = "by tenant, newest first"
		}
		d, status, n, err := b.get(path, admin, lc)
		close(stop)
		wg.Wait()
		if err != nil || status != 200 {
			return fmt.Errorf("export: %d %v", status, err)
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		records := lc.lines
		if format == "csv" {
			records-- // header
		}
		fmt.Printf("| %s | %s | %d | %d | %.2f | %.0f | %.0f | %.1f MiB | %.1f MiB | %d |\n", format, order, records, n, d.Seconds(),
			float64(records)/d.Seconds(), float64(n)/d.Seconds()/1e6, float64(peakHeap)/(1<<20), float64(peakRSS)/(1<<20), after.NumGC-before.NumGC)
	}
	return nil
}

// lineCounter counts newlines of what it is given; CSV fields do not hold newlines in this data set.
type lineCounter struct{ lines int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.lines += int64(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}

// rss returns the process's resident set size from /proc, or 0 where there is none.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// percentiles returns the 50th, 95th, 99th and 100th percentiles (nearest rank).
func percentiles(d []time.Duration) map[int]time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	out := map[int]time.Duration{}
	for _, p := range []int{50, 95, 99, 100} {
		i := (p*len(s)+99)/100 - 1
		out[p] = s[max(0, min(i, len(s)-1))]
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
