package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// statsRecords makes n records spread over [from, to): three tenants and records without one,
// every kind and severity, a handful of actions, actors (and none) and resource types (and none,
// and the service's own).
func statsRecords(rng *rand.Rand, n int, from, to time.Time) []*core.Record {
	tenants := []string{"t1", "t2", "t3", ""}
	rtypes := []string{"invoices", "users", "", store.ResourceAuditLogs, store.ResourceAuditTenants}
	out := make([]*core.Record, n)
	for i := range out {
		r := &core.Record{
			ID:           core.NewID(),
			OccurredAt:   from.Add(time.Duration(rng.Int64N(int64(to.Sub(from))))).Truncate(time.Microsecond),
			Kind:         kinds[rng.IntN(len(kinds))],
			Action:       actions[rng.IntN(len(actions))],
			Severity:     sevs[rng.IntN(len(sevs))],
			Tenant:       core.Tenant{ID: tenants[rng.IntN(len(tenants))]},
			ResourceType: rtypes[rng.IntN(len(rtypes))],
		}
		if a := rng.IntN(7); a > 0 {
			r.Actor = core.Actor{ID: fmt.Sprintf("u-%d", a), Type: core.ActorTenantUser}
		}
		out[i] = r
	}
	return out
}

// fullStats computes what Stats must answer with a full COUNT over audit_logs per dimension and
// per bucket.
func fullStats(t *testing.T, e *env, sc store.Scope, q store.StatsQuery) store.Stats {
	t.Helper()
	ctx := context.Background()
	f := q.Filter
	width := 24 * time.Hour
	if q.Bucket == store.BucketHour {
		width = time.Hour
	}
	where := ` WHERE occurred_at >= $1 AND occurred_at < $2`
	args := []any{f.From, f.To}
	if !sc.AllTenants {
		where += ` AND tenant_id = $3`
		args = append(args, sc.TenantID)
	}
	if !f.IncludeMeta {
		where += ` AND resource_type IS DISTINCT FROM 'audit_logs' AND resource_type IS DISTINCT FROM 'audit_tenants'`
	}
	table := pgx.Identifier{e.db.Schema, "audit_logs"}.Sanitize()
	want := store.Stats{From: f.From, To: f.To, Bucket: q.Bucket}
	for _, d := range []struct {
		expr string
		list *[]store.Count
	}{
		{"action", &want.ByAction}, {"kind::text", &want.ByKind}, {"severity::text", &want.BySeverity},
		{"coalesce(actor_id, '')", &want.ByActor}, {"coalesce(resource_type, '')", &want.ByResourceType},
	} {
		rows, err := e.db.Pool.Query(ctx, `SELECT `+d.expr+`, count(*) FROM `+table+where+` GROUP BY 1`, args...)
		if err != nil {
			t.Fatal(err)
		}
		var c store.Count
		if _, err := pgx.ForEachRow(rows, []any{&c.Value, &c.Count}, func() error {
			*d.list = append(*d.list, c)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(*d.list, func(a, b store.Count) int {
			if a.Count != b.Count {
				return int(b.Count - a.Count)
			}
			return strings.Compare(a.Value, b.Value)
		})
		top := q.Top
		if top == 0 {
			top = 10
		}
		*d.list = (*d.list)[:min(top, len(*d.list))]
	}
	counts := map[time.Time]int64{}
	rows, err := e.db.Pool.Query(ctx, `SELECT occurred_at FROM `+table+where, args...)
	if err != nil {
		t.Fatal(err)
	}
	var at time.Time
	if _, err := pgx.ForEachRow(rows, []any{&at}, func() error {
		counts[at.UTC().Truncate(width)]++
		want.Total++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want.Buckets = []store.BucketCount{}
	for b := f.From.Truncate(width); b.Before(f.To); b = b.Add(width) {
		want.Buckets = append(want.Buckets, store.BucketCount{Start: b, Count: counts[b]})
	}
	return want
}

func diffStats(got, want store.Stats) string {
	var d []string
	if got.Total != want.Total {
		d = append(d, fmt.Sprintf("total %d, want %d", got.Total, want.Total))
	}
	for _, l := range []struct {
		name      string
		got, want []store.Count
	}{
		{"action", got.ByAction, want.ByAction}, {"kind", got.ByKind, want.ByKind}, {"severity", got.BySeverity, want.BySeverity},
		{"actor", got.ByActor, want.ByActor}, {"resource type", got.ByResourceType, want.ByResourceType},
	} {
		if !slices.Equal(l.got, l.want) {
			d = append(d, fmt.Sprintf("by %s %v, want %v", l.name, l.got, l.want))
		}
	}
	if !slices.EqualFunc(got.Buckets, want.Buckets, func(a, b store.BucketCount) bool { return a.Start.Equal(b.Start) && a.Count == b.Count }) {
		d = append(d, fmt.Sprintf("buckets %v, want %v", got.Buckets, want.Buckets))
	}
	return strings.Join(d, "; ")
}

// statsCase is one Stats request of the tests that compare Stats with full counts.
type statsCase struct {
	sc store.Scope
	q  store.StatsQuery
}

// checkStats fails t, naming step, when Stats answers one of cases differently from a full count
// over audit_logs.
func checkStats(t *testing.T, e *env, step string, cases []statsCase) {
	t.Helper()
	for _, c := range cases {
		got, err := e.st.Stats(t.Context(), c.sc, c.q)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if d := diffStats(got, fullStats(t, e, c.sc, c.q)); d != "" {
			t.Fatalf("%s: stats of %s %+v: %s", step, c.sc, c.q, d)
		}
	}
}

// Stats answered from the hourly and daily counts equal a full count of audit_logs for every
// scope, bucket, range and top, through late records, replays, retention and tenant cleanup.
func TestStatsCountsMatchFullCount(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, store.Options{CleanupBatchSize: 50, Logger: slog.New(slog.DiscardHandler)})
	rng := rand.New(rand.NewPCG(13, 7))
	now := time.Now().UTC()
	start := now.Truncate(24*time.Hour).AddDate(0, 0, -3)
	recs := statsRecords(rng, 3000, start, now.Add(-time.Second))
	e.write(t, recs...)

	var queries []statsCase
	ranges := [][2]time.Time{
		{start, now.Add(time.Hour)},                                              // whole days and the open one
		{start.Add(90*time.Minute + 17*time.Second), now},                        // partial hours and days at both ends
		{start.Add(24 * time.Hour), start.Add(48 * time.Hour)},                   // one whole day
		{start.Add(30 * time.Hour), start.Add(31 * time.Hour)},                   // one whole hour
		{start.Add(-48 * time.Hour), start.Add(26*time.Hour + time.Microsecond)}, // days before the data
	}
	for _, sc := range []store.Scope{store.AllTenantsScope(), store.TenantScope("t1"), store.TenantScope("t3")} {
		for _, r := range ranges {
			for _, b := range []store.Bucket{store.BucketDay, store.BucketHour} {
				for _, meta := range []bool{false, true} {
					for _, top := range []int{100, 2} {
						queries = append(queries, statsCase{sc, store.StatsQuery{Filter: store.Filter{From: r[0], To: r[1], IncludeMeta: meta}, Bucket: b, Top: top}})
					}
				}
			}
		}
	}
	check := func(step string) {
		t.Helper()
		checkStats(t, e, step, queries)
	}
	refresh := func() {
		t.Helper()
		if err := e.st.RefreshStats(ctx, start.Add(-48*time.Hour), now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	countedUnits := func() (hours, days int) {
		t.Helper()
		err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE grain = 'h'), count(*) FILTER (WHERE grain = 'd')
			FROM `+pgx.Identifier{e.db.Schema, "audit_stats_units"}.Sanitize()+` WHERE rolled_mark IS NOT NULL`).Scan(&hours, &days)
		if err != nil {
			t.Fatal(err)
		}
		return hours, days
	}

	check("before counting")
	refresh()
	closedHours := int(now.Add(-time.Minute).Truncate(time.Hour).Sub(start.Add(-48*time.Hour)) / time.Hour)
	if h, d := countedUnits(); h < closedHours || h > closedHours+1 || d < 5 || d > 6 {
		t.Fatalf("counted %d hours and %d days, want %d and 5", h, d, closedHours)
	}
	check("counted")

	// Records arriving late for counted hours, in days already summed.
	late := statsRecords(rng, 200, start, start.Add(50*time.Hour))
	e.write(t, late...)
	check("late records")
	refresh()
	check("late records counted")

	// A replay of records already stored (a retried batch) is skipped and counts nothing twice.
	e.write(t, late[:120]...)
	e.write(t, recs[:300]...)
	check("replayed records")
	refresh()
	check("replays counted")

	// Retention of one tenant, and a tenant's records deleted entirely.
	if _, err := e.st.Cleanup(ctx, "t1", start.Add(26*time.Hour+30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	check("retention")
	if _, err := e.st.Cleanup(ctx, "t2", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("tenant cleaned up")
	refresh()
	check("cleanups counted")

	// The answers come from the counts: a count changed behind the store's back shows.
	if _, err := e.db.Pool.Exec(ctx, `UPDATE `+pgx.Identifier{e.db.Schema, "audit_stats_daily"}.Sanitize()+
		` SET n = n + 1000 WHERE day = $1 AND dim = 'k' AND value = 'custom' AND tenant_key = 't3' AND NOT meta`, start.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	q := store.StatsQuery{Filter: store.Filter{From: start.Add(24 * time.Hour), To: start.Add(48 * time.Hour)}}
	got, err := e.st.Stats(ctx, store.TenantScope("t3"), q)
	if err != nil {
		t.Fatal(err)
	}
	want := fullStats(t, e, store.TenantScope("t3"), q)
	if i := slices.IndexFunc(got.ByKind, func(c store.Count) bool { return c.Value == "custom" }); i < 0 || got.ByKind[i].Count != want.ByKind[slices.IndexFunc(want.ByKind, func(c store.Count) bool { return c.Value == "custom" })].Count+1000 {
		t.Fatalf("a whole counted day is not read from the daily counts: by kind %v, full count %v", got.ByKind, want.ByKind)
	}
}

// Stats over ranges holding whole ISO weeks read the weekly counts of migration 0008 and still
// equal a full count: ranges that start or end inside a week, exactly one week, weeks with hours
// at the edges, through late records into a summed week, retention and tenant cleanup.
func TestStatsWeeksMatchFullCount(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, store.Options{CleanupBatchSize: 50, Logger: slog.New(slog.DiscardHandler)})
	rng := rand.New(rand.NewPCG(8, 13))
	now := time.Now().UTC()
	today := now.Truncate(24 * time.Hour)
	// week0 is the Monday at least three weeks before today; the data starts two days earlier.
	week0 := today.AddDate(0, 0, -21-(int(today.Weekday())+6)%7)
	start := week0.AddDate(0, 0, -2)
	recs := statsRecords(rng, 2500, start, now.Add(-time.Second))
	e.write(t, recs...)

	var queries []statsCase
	ranges := [][2]time.Time{
		{start.Add(90*time.Minute + 17*time.Second), now},                                    // partial days at both ends, whole weeks inside
		{week0, week0.AddDate(0, 0, 7)},                                                      // exactly one week
		{week0.Add(-time.Hour), week0.AddDate(0, 0, 14).Add(time.Hour)},                      // two weeks and an hour on each side
		{week0.AddDate(0, 0, 3), week0.AddDate(0, 0, 10)},                                    // seven days across a week's end, no whole week
		{week0.AddDate(0, 0, 1).Add(5 * time.Hour), week0.AddDate(0, 0, 15).Add(-time.Hour)}, // one whole week, days and hours around it
	}
	for _, sc := range []store.Scope{store.AllTenantsScope(), store.TenantScope("t1"), store.TenantScope("t3")} {
		for _, r := range ranges {
			for _, b := range []store.Bucket{store.BucketDay, store.BucketHour} {
				queries = append(queries,
					statsCase{sc, store.StatsQuery{Filter: store.Filter{From: r[0], To: r[1]}, Bucket: b, Top: 2}},
					statsCase{sc, store.StatsQuery{Filter: store.Filter{From: r[0], To: r[1], IncludeMeta: true}, Bucket: b, Top: 100}})
			}
		}
	}
	check := func(step string) {
		t.Helper()
		checkStats(t, e, step, queries)
	}
	refresh := func() {
		t.Helper()
		if err := e.st.RefreshStats(ctx, start, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	units := pgx.Identifier{e.db.Schema, "audit_stats_units"}.Sanitize()
	currentWeeks := func() []time.Time {
		t.Helper()
		rows, err := e.db.Pool.Query(ctx, `SELECT start FROM `+units+` WHERE grain = 'w' AND rolled_mark IS NOT NULL ORDER BY start`)
		if err != nil {
			t.Fatal(err)
		}
		weeks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (time.Time, error) {
			var w time.Time
			err := r.Scan(&w)
			return w.UTC(), err
		})
		if err != nil {
			t.Fatal(err)
		}
		return weeks
	}

	spans := pgx.Identifier{e.db.Schema, "audit_stats_spans"}.Sanitize()
	// Every range of more than one whole unit gets a span for each scope: the first answer sums it
	// in the background (one at a time), later answers read it. Ask until all are summed: at least
	// 12 (4 of the 5 ranges, not exactly one week, × 3 scopes) and none waiting. There can be more:
	// the range that ends when the test started gains a closed hour, and so a span of its own, when
	// the clock passes the hour during the test, and a week made stale by a cleanup is answered
	// from its days until it is summed again.
	waitSpans := func(step string) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; {
			check(step)
			var summed, waiting int
			if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE rolled_mark IS NOT NULL),
				count(*) FILTER (WHERE rolled_mark IS NULL) FROM `+spans).Scan(&summed, &waiting); err != nil {
				t.Fatal(err)
			}
			if summed >= 12 && waiting == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d spans summed and %d waiting, want at least 12 summed and none waiting", step, summed, waiting)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	check("before counting")
	refresh()
	// The weeks summed are the three whole ones before the current week (whose days are not all
	// closed).
	if w := currentWeeks(); !slices.EqualFunc(w, []time.Time{week0, week0.AddDate(0, 0, 7), week0.AddDate(0, 0, 14)}, time.Time.Equal) {
		t.Fatalf("summed weeks %v, want the 3 starting %s", w, week0)
	}
	check("counted")
	waitSpans("spans summed")
	check("read from spans")

	// Late records into the middle of a summed week: it is read from its days and hours until
	// summed again.
	late := statsRecords(rng, 150, week0.AddDate(0, 0, 9), week0.AddDate(0, 0, 9).Add(5*time.Hour))
	e.write(t, late...)
	check("late records")
	refresh()
	check("late records counted")

	// Retention of one tenant inside the first week, and a tenant's records deleted entirely.
	if _, err := e.st.Cleanup(ctx, "t1", week0.AddDate(0, 0, 3).Add(7*time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("retention")
	if _, err := e.st.Cleanup(ctx, "t2", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("tenant cleaned up")
	refresh()
	if w := currentWeeks(); len(w) != 3 {
		t.Fatalf("summed weeks after the cleanups %v, want 3", w)
	}
	check("cleanups counted")
	waitSpans("spans summed again")
	check("read from spans again")

	custom := func(l []store.Count) int64 {
		i := slices.IndexFunc(l, func(c store.Count) bool { return c.Value == "custom" })
		if i < 0 {
			t.Fatalf("no kind custom in %v", l)
		}
		return l[i].Count
	}
	// The answers come from the spans: a count changed behind the store's back shows.
	spanFrom, spanTo := week0.Add(-time.Hour), week0.AddDate(0, 0, 14).Add(time.Hour)
	tag, err := e.db.Pool.Exec(ctx, `UPDATE `+pgx.Identifier{e.db.Schema, "audit_stats_span_counts"}.Sanitize()+` SET n = n + 1000
		WHERE span = (SELECT id FROM `+spans+` WHERE tenant_key = '*' AND start = $1 AND stop = $2) AND dim = 'k' AND value = 'custom' AND NOT meta`, spanFrom, spanTo)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("changing a span's count: %v, %d rows", err, tag.RowsAffected())
	}
	sq := store.StatsQuery{Filter: store.Filter{From: spanFrom, To: spanTo}, Bucket: store.BucketHour}
	sgot, err := e.st.Stats(ctx, store.AllTenantsScope(), sq)
	if err != nil {
		t.Fatal(err)
	}
	if swant := fullStats(t, e, store.AllTenantsScope(), sq); custom(sgot.ByKind) != custom(swant.ByKind)+1000 || sgot.Total != swant.Total {
		t.Fatalf("a span is not read from its sums: by kind %v, full count %v", sgot.ByKind, swant.ByKind)
	}
	// A record written into the span's hours makes it stale: answers are exact again.
	e.write(t, statsRecords(rng, 1, week0.AddDate(0, 0, 4), week0.AddDate(0, 0, 4).Add(time.Hour))...)
	check("a span made stale")

	// The answers come from the weekly counts: a count changed behind the store's back shows.
	if _, err := e.db.Pool.Exec(ctx, `UPDATE `+pgx.Identifier{e.db.Schema, "audit_stats_weekly"}.Sanitize()+
		` SET n = n + 1000 WHERE week = $1 AND dim = 'k' AND value = 'custom' AND tenant_key = '*' AND NOT meta`, week0.AddDate(0, 0, 7)); err != nil {
		t.Fatal(err)
	}
	q := store.StatsQuery{Filter: store.Filter{From: week0.AddDate(0, 0, 6), To: week0.AddDate(0, 0, 15)}}
	got, err := e.st.Stats(ctx, store.AllTenantsScope(), q)
	if err != nil {
		t.Fatal(err)
	}
	want := fullStats(t, e, store.AllTenantsScope(), q)
	if custom(got.ByKind) != custom(want.ByKind)+1000 {
		t.Fatalf("a whole summed week is not read from the weekly counts: by kind %v, full count %v", got.ByKind, want.ByKind)
	}
}
