package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pre-aggregated counts (migrations 0007 to 0009). Closed hours are counted once into
// audit_stats_hourly, days whose 24 hours are counted are summed into audit_stats_daily, and ISO
// weeks whose 7 days are summed into audit_stats_weekly. Stats reads those counts for the whole
// weeks, days and hours of its range that are current and counts the rest (the open hour, the
// partial hours at the edges, hours not counted yet or changed since) from audit_logs, all in one
// snapshot, so every answer is exact. When those weeks, days and hours are contiguous, their sums
// are kept as a span (per scope, the last maxStatsSpans), made in the background after the first
// request, and later requests for the same whole hours read the span instead.
//
// Why weeks and spans: a unit's counts hold one row per distinct value of each dimension, and
// across all tenants the actor ids make nearly all of them (as many rows per day as actors active
// that day). Summing 30 days read 30 times the actors; whole weeks cut that to 3 or 4 weeks and
// at most 9 days, and a span to one row per value. A top list kept per unit would read less but
// is not exact (the top values of a sum are not the top values of its parts), and running totals
// would have to be rewritten from the day of every late record onwards; weeks and spans stay
// exact by the same marks as the days, at no cost to writers.
//
// Writers do not maintain the counts. A statement-level trigger adds an audit_stats_dirty entry
// for each counted hour a statement inserts into or deletes from; such an hour, and its day, are
// counted from audit_logs until counted again. Counting hours first takes a number from
// audit_stats_mark_seq while audit_logs is locked against writes (SHARE mode, waiting at most
// statsLockTimeout): every writer that did not see the new hours in audit_stats_units has
// committed by then and is in the counts, and every later change to those hours gets a higher
// entry, so a unit is current exactly while no entry of its hours is above its mark.

// statsGrace is how long after its end an hour is counted: records written a few seconds after
// their hour (batching, retries) then usually arrive before it is counted rather than after.
const statsGrace = time.Minute

// statsLockTimeout bounds the wait for in-flight writes before counting; writers queue behind
// that wait, so it stays short. A refresh that times out is retried by the next one.
const statsLockTimeout = "1s"

// statsOrigin is the origin of date_bin for hours and days: a UTC midnight.
const statsOrigin = `'2000-01-01 00:00:00+00'::timestamptz`

const statsDay = 24 * time.Hour

// statsWeek is the length of a week of counts; weeks start on a Monday at 00:00 UTC.
const statsWeek = 7 * statsDay

// statsWeekOrigin is a Monday: weeks are date_bin('7 days', t, statsWeekOrigin).
var statsWeekOrigin = time.Date(2000, 1, 3, 0, 0, 0, 0, time.UTC)

// weekStart returns the start of the week of t (which is UTC).
func weekStart(t time.Time) time.Time {
	return t.Add(-(t.Sub(statsWeekOrigin)%statsWeek + statsWeek) % statsWeek)
}

// statsReads is which counts Stats reads; each level reads those of the levels before it too.
type statsReads int

const (
	statsReadsDaysHours statsReads = iota // days and hours (migration 0007)
	statsReadsWeeks                       // and whole weeks (migration 0008)
	statsReadsSpans                       // and the sums of whole spans (migration 0009)
)

// statsPlan is how a stats range is read: whole weeks, days and hours from the counts, the rest
// from audit_logs.
type statsPlan struct {
	weeks, days, hours []time.Time
	raw                [][2]time.Time // [from, to) ranges, in order, not adjacent
	stale              bool           // some closed hour or day of the range is not counted or not current
}

// rollupEligible reports whether the counts can answer a stats query with filter f: they are
// kept by tenant, by whether a record is one of the service's own, and by time, so the filter may
// only bound the time and include the service's records. Values is the filter's complete
// encoding (cursors are bound to it), so a field added to Filter is never ignored here.
func rollupEligible(f Filter) bool {
	f.From, f.To, f.IncludeMeta = time.Time{}, time.Time{}, false
	return len(f.Values()) == 0
}

// currentUnits reads which hours, days and weeks starting in [lo, hi) have current counts.
func (s *Store) currentUnits(ctx context.Context, q querier, lo, hi time.Time) (hours, days, weeks map[time.Time]bool, err error) {
	rows, err := q.Query(ctx, `SELECT u.grain::text, u.start FROM `+s.statsTable("audit_stats_units")+` u
		WHERE u.start >= $1 AND u.start < $2 AND u.rolled_mark IS NOT NULL
		  AND u.start >= `+s.retainedFromSQL()+`
		  AND NOT EXISTS (SELECT 1 FROM `+s.statsTable("audit_stats_dirty")+` x
		                  WHERE x.start >= u.start
		                    AND x.start < u.start + CASE u.grain WHEN 'w' THEN interval '7 days' WHEN 'd' THEN interval '1 day' ELSE interval '1 hour' END
		                    AND x.id > u.rolled_mark)`, lo, hi)
	if err != nil {
		return nil, nil, nil, err
	}
	defer rows.Close()
	hours, days, weeks = map[time.Time]bool{}, map[time.Time]bool{}, map[time.Time]bool{}
	for rows.Next() {
		var grain string
		var start time.Time
		if err := rows.Scan(&grain, &start); err != nil {
			return nil, nil, nil, err
		}
		switch grain {
		case "w":
			weeks[start.UTC()] = true
		case "d":
			days[start.UTC()] = true
		default:
			hours[start.UTC()] = true
		}
	}
	return hours, days, weeks, rows.Err()
}

// retainedFromSQL is the time before which retention may have removed records without a DELETE
// (a dropped partition), so that the triggers never saw them go: counts of earlier units are not
// used. Retention records it in audit_retention_marks (migration 0006) under the key '*'.
func (s *Store) retainedFromSQL() string {
	return `coalesce((SELECT m.retained_from FROM ` + s.statsTable("audit_retention_marks") +
		` m WHERE m.tenant_key = '*'), '-infinity'::timestamptz)`
}

// planStats splits [from, to) into whole current weeks, days and hours and raw ranges (weeks nil:
// days and hours only). closedBefore is the end of the last closed hour: units ending after it
// are not expected to be counted.
func planStats(from, to time.Time, hours, days, weeks map[time.Time]bool, closedBefore time.Time) statsPlan {
	var p statsPlan
	addRaw := func(a, b time.Time) {
		if n := len(p.raw); n > 0 && p.raw[n-1][1].Equal(a) {
			p.raw[n-1][1] = b
			return
		}
		p.raw = append(p.raw, [2]time.Time{a, b})
	}
	for d := from.Truncate(statsDay); d.Before(to); d = d.Add(statsDay) {
		if weeks != nil && weekStart(d).Equal(d) && !d.Before(from) && !d.Add(statsWeek).After(to) {
			if weeks[d] {
				p.weeks = append(p.weeks, d)
				d = d.Add(statsWeek - statsDay)
				continue
			}
			if !d.Add(statsWeek).After(closedBefore) {
				p.stale = true
			}
		}
		if !d.Before(from) && !d.Add(statsDay).After(to) {
			if days[d] {
				p.days = append(p.days, d)
				continue
			}
			if !d.Add(statsDay).After(closedBefore) {
				p.stale = true
			}
		}
		for h := d; h.Before(d.Add(statsDay)) && h.Before(to); h = h.Add(time.Hour) {
			if h.Add(time.Hour).Before(from) || h.Add(time.Hour).Equal(from) {
				continue
			}
			whole := !h.Before(from) && !h.Add(time.Hour).After(to)
			if whole && hours[h] {
				p.hours = append(p.hours, h)
				continue
			}
			if whole && !h.Add(time.Hour).After(closedBefore) {
				p.stale = true
			}
			addRaw(maxTime(h, from), minTime(h.Add(time.Hour), to))
		}
	}
	return p
}

// span returns the hours [from, to) that the plan's weeks, days and hours cover when they are
// contiguous and more than one: a span summed once can answer for all of them.
func (p statsPlan) span() (from, to time.Time, ok bool) {
	type unit struct{ a, b time.Time }
	var us []unit
	for _, w := range p.weeks {
		us = append(us, unit{w, w.Add(statsWeek)})
	}
	for _, d := range p.days {
		us = append(us, unit{d, d.Add(statsDay)})
	}
	for _, h := range p.hours {
		us = append(us, unit{h, h.Add(time.Hour)})
	}
	if len(us) < 2 {
		return time.Time{}, time.Time{}, false
	}
	slices.SortFunc(us, func(x, y unit) int { return x.a.Compare(y.a) })
	for i := 1; i < len(us); i++ {
		if !us[i].a.Equal(us[i-1].b) {
			return time.Time{}, time.Time{}, false
		}
	}
	return us[0].a, us[len(us)-1].b, true
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// statsFromRollup answers a stats query from the counts and audit_logs. It returns ok false,
// without error, when no whole day or hour of the range is counted: the caller then scans.
func (s *Store) statsFromRollup(ctx context.Context, sc Scope, f Filter, bucket Bucket, top int, reads statsReads, st *Stats, counts map[int64]int64) (ok bool, err error) {
	closedBefore := time.Now().UTC().Add(-statsGrace).Truncate(time.Hour)
	key := "*"
	if !sc.AllTenants {
		key = sc.TenantID
	}
	var plan statsPlan
	var spanID int64
	var spanFrom, spanTo time.Time
	wantSpan := false
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		hours, days, wk, err := s.currentUnits(ctx, tx, f.From.Truncate(statsDay), f.To)
		if err != nil {
			return err
		}
		if reads < statsReadsWeeks {
			wk = nil
		}
		plan = planStats(f.From, f.To, hours, days, wk, closedBefore)
		if len(plan.weeks) == 0 && len(plan.days) == 0 && len(plan.hours) == 0 {
			return nil
		}
		ok = true
		if a, b, whole := plan.span(); whole && reads >= statsReadsSpans && !plan.stale {
			spanFrom, spanTo = a, b
			err := tx.QueryRow(ctx, `SELECT s.id FROM `+s.statsTable("audit_stats_spans")+` s
				WHERE s.tenant_key = $1 AND s.start = $2 AND s.stop = $3 AND s.rolled_mark IS NOT NULL
				  AND s.start >= `+s.retainedFromSQL()+`
				  AND NOT EXISTS (SELECT 1 FROM `+s.statsTable("audit_stats_dirty")+` x
				                  WHERE x.start >= s.start AND x.start < s.stop AND x.id > s.rolled_mark)`, key, a, b).Scan(&spanID)
			if errors.Is(err, pgx.ErrNoRows) {
				wantSpan = true
			} else if err != nil {
				return err
			}
		}
		set := `SET LOCAL work_mem = '` + statsWorkMem + `'; SET LOCAL jit = off`
		if !sc.AllTenants {
			// One tenant's counts are a few thousand rows: starting parallel workers costs more
			// than it saves (on the 1M-row data set 2 to 10 times the serial plan's time).
			set += `; SET LOCAL max_parallel_workers_per_gather = 0`
		}
		if _, err := tx.Exec(ctx, set); err != nil {
			return err
		}
		var b sqlBuilder
		width := b.arg("1 " + string(bucket))
		// The counts of all tenants together are kept under the key '*' (never a tenant id). The
		// tenant's parameter is added when first used: a statement may not have one it never reads.
		cond := ""
		unitCond := func() string {
			if cond == "" {
				cond = " AND tenant_key = '*'"
				if !sc.AllTenants {
					cond = " AND tenant_key = " + b.arg(sc.TenantID)
				}
				if !f.IncludeMeta {
					cond += " AND NOT meta"
				}
			}
			return cond
		}
		b.w(`WITH c(dim, value, b, n) AS (`)
		union := ""
		if spanID != 0 {
			// The span holds the sums of exactly the weeks, days and hours of the plan.
			b.w(`SELECT dim::text AS dim, value, CASE WHEN dim = 'h' THEN date_bin(`, width, `::interval, `, b.arg(spanFrom), `::timestamptz + value::int * interval '1 hour', `, statsOrigin, `) END AS b, n
	FROM `, s.statsTable("audit_stats_span_counts"), ` WHERE span = `, b.arg(spanID))
			if !f.IncludeMeta {
				b.w(" AND NOT meta")
			}
			union = "\n	UNION ALL "
			plan.weeks, plan.days, plan.hours = nil, nil, nil
		}
		if len(plan.weeks) > 0 {
			b.w(`SELECT dim::text AS dim, value, CASE WHEN dim = 'h' THEN date_bin(`, width, `::interval, week + value::int * interval '1 hour', `, statsOrigin, `) END AS b, n
	FROM `, s.statsTable("audit_stats_weekly"), ` WHERE week = ANY(`, b.arg(plan.weeks), `::timestamptz[])`, unitCond())
			union = "\n	UNION ALL "
		}
		if len(plan.days) > 0 {
			b.w(union, `SELECT dim::text AS dim, value, CASE WHEN dim = 'h' THEN date_bin(`, width, `::interval, day + value::int * interval '1 hour', `, statsOrigin, `) END AS b, n
	FROM `, s.statsTable("audit_stats_daily"), ` WHERE day = ANY(`, b.arg(plan.days), `::timestamptz[])`, unitCond())
			union = "\n	UNION ALL "
		}
		if len(plan.hours) > 0 {
			b.w(union, `SELECT dim::text, value, CASE WHEN dim = 't' THEN date_bin(`, width, `::interval, hour, `, statsOrigin, `) END, n
	FROM `, s.statsTable("audit_stats_hourly"), ` WHERE hour = ANY(`, b.arg(plan.hours), `::timestamptz[])`, unitCond())
			union = "\n	UNION ALL "
		}
		if len(plan.raw) > 0 {
			b.w(union, `SELECT v.dim, v.value, v.b, count(*) FROM (
		SELECT action, kind::text AS kind, severity::text AS severity, coalesce(actor_id, '') AS actor,
		       coalesce(resource_type, '') AS rtype, date_bin(`, width, `::interval, occurred_at, `, statsOrigin, `) AS b
		FROM `, s.logs)
			s.where(&b, sc, Filter{IncludeMeta: f.IncludeMeta})
			b.w(" AND (")
			for i, r := range plan.raw {
				if i > 0 {
					b.w(" OR ")
				}
				b.w("(occurred_at >= ", b.arg(r[0]), " AND occurred_at < ", b.arg(r[1]), ")")
			}
			b.w(`)) x
	CROSS JOIN LATERAL (VALUES ('t', '', x.b), ('a', x.action, NULL::timestamptz), ('k', x.kind, NULL), ('s', x.severity, NULL),
	                           ('u', x.actor, NULL), ('r', x.rtype, NULL)) v(dim, value, b)
	GROUP BY 1, 2, 3`)
		}
		b.w(`),
s AS (SELECT dim, value, b, sum(n)::bigint AS n FROM c GROUP BY dim, value, b)
SELECT dim, value, b, n FROM (
	SELECT s.*, row_number() OVER (PARTITION BY dim ORDER BY n DESC, value COLLATE "C") AS rn
	FROM s WHERE dim NOT IN ('t', 'h')) t
WHERE rn <= `, b.arg(top), `
UNION ALL
SELECT 't', '', b, sum(n)::bigint FROM s WHERE dim IN ('t', 'h') GROUP BY b`)
		rows, err := tx.Query(ctx, b.sb.String(), append([]any{customPlan}, b.args...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var dim, value string
			var bt *time.Time
			var n int64
			if err := rows.Scan(&dim, &value, &bt, &n); err != nil {
				return err
			}
			c := Count{Value: value, Count: n}
			switch dim {
			case "a":
				st.ByAction = append(st.ByAction, c)
			case "k":
				st.ByKind = append(st.ByKind, c)
			case "s":
				st.BySeverity = append(st.BySeverity, c)
			case "u":
				st.ByActor = append(st.ByActor, c)
			case "r":
				st.ByResourceType = append(st.ByResourceType, c)
			case "t":
				if bt != nil {
					counts[bt.UTC().UnixMicro()] += n
					st.Total += n
				}
			}
		}
		return rows.Err()
	})
	if err != nil {
		return false, err
	}
	if plan.stale {
		s.refreshStatsLater(f.From, f.To)
	} else if wantSpan {
		s.sumSpanLater(key, spanFrom, spanTo)
	}
	return ok, nil
}

// RefreshStats counts the closed hours of [from, to) that are not counted yet or changed since
// they were, sums the days of the range whose hours are all counted and the weeks whose days are
// (whole UTC hours and days overlapping the range, and the ISO weeks, Monday to Sunday UTC, that
// these days cover entirely; an hour is closed one minute after its end). Stats calls it in the
// background for the ranges it is asked about, so calling it is never needed for correct
// answers; a service may call it (for example after midnight) so that no request finds the
// previous day uncounted. It needs a role that may lock audit_logs in SHARE mode and write the
// stats tables (the tables' owner), and waits at most a second for in-flight writes: if they take
// longer it returns an error and a later call counts those hours.
func (s *Store) RefreshStats(ctx context.Context, from, to time.Time) error {
	if from.IsZero() || to.IsZero() || !from.Before(to) {
		return paramErr(ParamFrom, "RefreshStats needs a range with from before to")
	}
	closedBefore := time.Now().UTC().Add(-statsGrace).Truncate(time.Hour)
	lo := from.UTC().Truncate(statsDay)
	hi := minTime(to.UTC().Add(statsDay-1).Truncate(statsDay), closedBefore)
	if !lo.Before(hi) {
		return nil
	}
	var retained time.Time
	if err := s.pool.QueryRow(ctx, `SELECT greatest(`+s.retainedFromSQL()+`, $1::timestamptz)`, lo).Scan(&retained); err != nil {
		return fmt.Errorf("store: counting stats: %w", err)
	}
	if lo.Before(retained) {
		// Units before retention's mark are not used; count from the first whole day after it.
		lo = retained.UTC().Add(statsDay - time.Microsecond).Truncate(statsDay)
		if !lo.Before(hi) {
			return nil
		}
	}
	hours, days, weeks, err := s.currentUnits(ctx, s.pool, lo, hi)
	if err != nil {
		return fmt.Errorf("store: counting stats: %w", err)
	}
	var need []time.Time
	for h := lo; h.Before(hi); h = h.Add(time.Hour) {
		if !hours[h] {
			need = append(need, h)
		}
	}
	if len(need) > 0 {
		mark, err := s.claimHours(ctx, need)
		if err != nil {
			return fmt.Errorf("store: counting stats: %w", err)
		}
		// One transaction per day of hours keeps each short.
		for len(need) > 0 {
			d := need[0].Truncate(statsDay)
			n := 1
			for n < len(need) && need[n].Truncate(statsDay).Equal(d) {
				n++
			}
			if err := s.countHours(ctx, need[:n], mark); err != nil {
				return fmt.Errorf("store: counting stats: %w", err)
			}
			need = need[n:]
		}
	}
	var sum []time.Time
	for d := lo; !d.Add(statsDay).After(hi); d = d.Add(statsDay) {
		if !days[d] {
			sum = append(sum, d)
		}
	}
	if len(sum) > 0 {
		if err := s.sumDays(ctx, sum); err != nil {
			return fmt.Errorf("store: counting stats: %w", err)
		}
	}
	var sumW []time.Time
	for w := weekStart(lo.Add(statsWeek - statsDay)); !w.Add(statsWeek).After(hi); w = w.Add(statsWeek) {
		if !weeks[w] {
			sumW = append(sumW, w)
		}
	}
	if len(sumW) > 0 {
		if err := s.sumWeeks(ctx, sumW); err != nil {
			return fmt.Errorf("store: counting stats: %w", err)
		}
	}
	if len(sum) > 1 {
		// After counting several days at once (the first refresh of a large table), the planner
		// needs the tables' statistics now rather than at autovacuum's next visit.
		if _, err := s.pool.Exec(ctx, `ANALYZE `+s.statsTable("audit_stats_hourly")+`, `+s.statsTable("audit_stats_daily")+`, `+s.statsTable("audit_stats_weekly")); err != nil {
			return fmt.Errorf("store: counting stats: %w", err)
		}
	}
	return nil
}

// claimHours records hours as counted-to-be, so that from now on writes into them leave a dirty
// entry, and returns the mark their counts will carry. The SHARE lock waits for the writes in
// flight (they did not see these hours) to commit, and holds new ones back until the hours are
// recorded.
func (s *Store) claimHours(ctx context.Context, hours []time.Time) (int64, error) {
	var mark int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+statsLockTimeout+`'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE `+s.logs+` IN SHARE MODE`); err != nil {
			return fmt.Errorf("waiting for in-flight writes: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.statsTable("audit_stats_units")+` (grain, start) SELECT 'h', unnest($1::timestamptz[]) ON CONFLICT DO NOTHING`, hours); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT nextval($1::regclass)`, s.statsTable("audit_stats_mark_seq")).Scan(&mark)
	})
	return mark, err
}

// statsLock serialises the transactions that replace counts, so that two processes counting the
// same hour do not both insert its rows.
func (s *Store) statsLock(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('auditkit.stats.' || $1, 0))`, s.schema)
	return err
}

// countHours replaces the counts of hours (all in one day) with counts from audit_logs, marks
// them current as of mark, and marks their day and week as needing a new sum.
func (s *Store) countHours(ctx context.Context, hours []time.Time, mark int64) error {
	lo, hi := hours[0], hours[len(hours)-1].Add(time.Hour)
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.statsLock(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '`+statsWorkMem+`'; SET LOCAL jit = off`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+s.statsTable("audit_stats_hourly")+` WHERE hour = ANY($1::timestamptz[])`, hours); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.statsTable("audit_stats_hourly")+` (hour, tenant_key, meta, dim, value, n)
			SELECT x.h, x.tk, x.meta, v.dim::"char", v.value, count(*)
			FROM (SELECT date_bin('1 hour', occurred_at, `+statsOrigin+`) AS h, coalesce(tenant_id, '') AS tk,
			             coalesce(resource_type IN ('`+ResourceAuditLogs+`', '`+ResourceAuditTenants+`'), false) AS meta,
			             action, kind::text AS kind, severity::text AS severity, coalesce(actor_id, '') AS actor,
			             coalesce(resource_type, '') AS rtype
			      FROM `+s.logs+` WHERE occurred_at >= $2 AND occurred_at < $3) x
			CROSS JOIN LATERAL (VALUES ('t', ''), ('a', x.action), ('k', x.kind), ('s', x.severity), ('u', x.actor), ('r', x.rtype)) v(dim, value)
			WHERE x.h = ANY($1::timestamptz[])
			GROUP BY 1, 2, 3, 4, 5`, hours, lo, hi); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.statsTable("audit_stats_hourly")+` (hour, tenant_key, meta, dim, value, n)
			SELECT hour, '*', meta, dim, value, sum(n) FROM `+s.statsTable("audit_stats_hourly")+`
			WHERE hour = ANY($1::timestamptz[]) GROUP BY hour, meta, dim, value`, hours); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE `+s.statsTable("audit_stats_units")+` SET rolled_mark = $2, rolled_at = now() WHERE grain = 'h' AND start = ANY($1::timestamptz[])`, hours, mark); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE `+s.statsTable("audit_stats_units")+` SET rolled_mark = NULL, rolled_at = NULL
			WHERE (grain = 'd' AND start = $1) OR (grain = 'w' AND start = $2)`, lo.Truncate(statsDay), weekStart(lo.Truncate(statsDay))); err != nil {
			return err
		}
		// The dirty entries removed below are what made the spans over these hours stale.
		if _, err := tx.Exec(ctx, `UPDATE `+s.statsTable("audit_stats_spans")+` SET rolled_mark = NULL
			WHERE rolled_mark IS NOT NULL AND start < $2 AND stop > $1`, lo, hi); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM `+s.statsTable("audit_stats_dirty")+` WHERE start = ANY($1::timestamptz[]) AND id <= $2`, hours, mark)
		return err
	})
}

// sumDays replaces the daily counts of the given days whose 24 hours are current with the sums of
// those hours. A day's mark is the lowest of its hours': any later change of one of them has a
// higher dirty entry.
func (s *Store) sumDays(ctx context.Context, days []time.Time) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.statsLock(ctx, tx); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT d.day, min(u.rolled_mark)
			FROM unnest($1::timestamptz[]) d(day)
			JOIN `+s.statsTable("audit_stats_units")+` u ON u.grain = 'h' AND u.start >= d.day AND u.start < d.day + interval '1 day'
			WHERE u.rolled_mark IS NOT NULL
			  AND NOT EXISTS (SELECT 1 FROM `+s.statsTable("audit_stats_dirty")+` x WHERE x.start = u.start AND x.id > u.rolled_mark)
			GROUP BY d.day HAVING count(*) = 24`, days)
		if err != nil {
			return err
		}
		var ready []time.Time
		var marks []int64
		for rows.Next() {
			var d time.Time
			var m int64
			if err := rows.Scan(&d, &m); err != nil {
				rows.Close()
				return err
			}
			ready, marks = append(ready, d), append(marks, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ready) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+s.statsTable("audit_stats_daily")+` WHERE day = ANY($1::timestamptz[])`, ready); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.statsTable("audit_stats_daily")+` (day, tenant_key, meta, dim, value, n)
			SELECT date_bin('1 day', hour, `+statsOrigin+`), tenant_key, meta,
			       CASE WHEN dim = 't' THEN 'h' ELSE dim END,
			       CASE WHEN dim = 't' THEN to_char(hour AT TIME ZONE 'UTC', 'HH24') ELSE value END, sum(n)
			FROM `+s.statsTable("audit_stats_hourly")+`
			WHERE hour >= $2 AND hour < $3 AND date_bin('1 day', hour, `+statsOrigin+`) = ANY($1::timestamptz[])
			GROUP BY 1, 2, 3, 4, 5`, ready, slices.MinFunc(ready, time.Time.Compare), slices.MaxFunc(ready, time.Time.Compare).Add(statsDay)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO `+s.statsTable("audit_stats_units")+` (grain, start, rolled_mark, rolled_at)
			SELECT 'd', d, m, now() FROM unnest($1::timestamptz[], $2::bigint[]) t(d, m)
			ON CONFLICT (grain, start) DO UPDATE SET rolled_mark = excluded.rolled_mark, rolled_at = excluded.rolled_at`, ready, marks)
		return err
	})
}

// sumWeeks replaces the weekly counts of the given weeks whose 7 days are current with the sums
// of those days. A week's mark is the lowest of its days' (each the lowest of its hours'): any
// later change of one of its hours has a higher dirty entry.
func (s *Store) sumWeeks(ctx context.Context, weeks []time.Time) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.statsLock(ctx, tx); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT w.week, min(u.rolled_mark)
			FROM unnest($1::timestamptz[]) w(week)
			JOIN `+s.statsTable("audit_stats_units")+` u ON u.grain = 'd' AND u.start >= w.week AND u.start < w.week + interval '7 days'
			WHERE u.rolled_mark IS NOT NULL
			  AND NOT EXISTS (SELECT 1 FROM `+s.statsTable("audit_stats_dirty")+` x
			                  WHERE x.start >= u.start AND x.start < u.start + interval '1 day' AND x.id > u.rolled_mark)
			GROUP BY w.week HAVING count(*) = 7`, weeks)
		if err != nil {
			return err
		}
		var ready []time.Time
		var marks []int64
		for rows.Next() {
			var w time.Time
			var m int64
			if err := rows.Scan(&w, &m); err != nil {
				rows.Close()
				return err
			}
			ready, marks = append(ready, w), append(marks, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ready) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+s.statsTable("audit_stats_weekly")+` WHERE week = ANY($1::timestamptz[])`, ready); err != nil {
			return err
		}
		// The hour of the week of a day's hour total is its day's offset in the week, in hours,
		// plus its hour of the day.
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.statsTable("audit_stats_weekly")+` (week, tenant_key, meta, dim, value, n)
			SELECT w.week, d.tenant_key, d.meta, d.dim,
			       CASE WHEN d.dim = 'h' THEN lpad((extract(day FROM d.day - w.week)::int * 24 + d.value::int)::text, 3, '0') ELSE d.value END,
			       sum(d.n)
			FROM unnest($1::timestamptz[]) w(week)
			JOIN `+s.statsTable("audit_stats_daily")+` d ON d.day >= w.week AND d.day < w.week + interval '7 days'
			GROUP BY 1, 2, 3, 4, 5`, ready); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO `+s.statsTable("audit_stats_units")+` (grain, start, rolled_mark, rolled_at)
			SELECT 'w', w, m, now() FROM unnest($1::timestamptz[], $2::bigint[]) t(w, m)
			ON CONFLICT (grain, start) DO UPDATE SET rolled_mark = excluded.rolled_mark, rolled_at = excluded.rolled_at`, ready, marks)
		return err
	})
}

// maxStatsSpans is how many spans are kept per tenant key (and for all tenants): the most recent,
// enough for the few ranges a dashboard asks for at once.
const maxStatsSpans = 8

// sumSpan sums the counts of the whole hours [from, to) for key (a tenant id, or '*' for all
// tenants) into a span, if every week, day and hour that planStats reads for them is current. Its
// mark is the lowest of theirs: any later change of one of its hours has a higher dirty entry, and
// recounting one of its hours (which removes the entries) marks the span stale. It holds the
// stats lock from its first statement, so no counting changes the units and counts it reads
// between its statements. The oldest spans of key beyond maxStatsSpans are removed.
func (s *Store) sumSpan(ctx context.Context, key string, from, to time.Time) error {
	closedBefore := time.Now().UTC().Add(-statsGrace).Truncate(time.Hour)
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.statsLock(ctx, tx); err != nil {
			return err
		}
		hours, days, weeks, err := s.currentUnits(ctx, tx, from.Truncate(statsDay), to)
		if err != nil {
			return err
		}
		p := planStats(from, to, hours, days, weeks, closedBefore)
		if a, b, whole := p.span(); p.stale || len(p.raw) > 0 || !whole || !a.Equal(from) || !b.Equal(to) {
			return nil
		}
		var mark *int64
		if err := tx.QueryRow(ctx, `SELECT min(rolled_mark) FROM `+s.statsTable("audit_stats_units")+`
			WHERE (grain = 'w' AND start = ANY($1::timestamptz[])) OR (grain = 'd' AND start = ANY($2::timestamptz[]))
			   OR (grain = 'h' AND start = ANY($3::timestamptz[]))`, p.weeks, p.days, p.hours).Scan(&mark); err != nil {
			return err
		}
		if mark == nil {
			return nil
		}
		spans := s.statsTable("audit_stats_spans")
		if _, err := tx.Exec(ctx, `DELETE FROM `+spans+` WHERE tenant_key = $1 AND start = $2 AND stop = $3`, key, from, to); err != nil {
			return err
		}
		var id int64
		err = tx.QueryRow(ctx, `INSERT INTO `+spans+` (tenant_key, start, stop, rolled_mark) VALUES ($1, $2, $3, $4)
			ON CONFLICT DO NOTHING RETURNING id`, key, from, to, *mark).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // summed at the same time by another process
		}
		if err != nil {
			return err
		}
		// Hour totals become dim 'h' with the hour's offset from the span's start as value.
		if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '`+statsWorkMem+`'; SET LOCAL jit = off`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.statsTable("audit_stats_span_counts")+` (span, meta, dim, value, n)
			SELECT $1, meta, dim, value, sum(n) FROM (
				SELECT meta, dim, CASE WHEN dim = 'h' THEN (extract(epoch FROM week - $2) / 3600 + value::int)::int::text ELSE value END AS value, n
				FROM `+s.statsTable("audit_stats_weekly")+` WHERE tenant_key = $3 AND week = ANY($4::timestamptz[])
				UNION ALL
				SELECT meta, dim, CASE WHEN dim = 'h' THEN (extract(epoch FROM day - $2) / 3600 + value::int)::int::text ELSE value END, n
				FROM `+s.statsTable("audit_stats_daily")+` WHERE tenant_key = $3 AND day = ANY($5::timestamptz[])
				UNION ALL
				SELECT meta, CASE WHEN dim = 't' THEN 'h' ELSE dim END, CASE WHEN dim = 't' THEN (extract(epoch FROM hour - $2) / 3600)::int::text ELSE value END, n
				FROM `+s.statsTable("audit_stats_hourly")+` WHERE tenant_key = $3 AND hour = ANY($6::timestamptz[])) c
			GROUP BY meta, dim, value`, id, from, key, p.weeks, p.days, p.hours); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM `+spans+` WHERE tenant_key = $1 AND id NOT IN
			(SELECT id FROM `+spans+` WHERE tenant_key = $1 ORDER BY id DESC LIMIT `+strconv.Itoa(maxStatsSpans)+`)`, key)
		return err
	})
}

// sumSpanLater starts sumSpan in the background unless a refresh or another sum runs.
func (s *Store) sumSpanLater(key string, from, to time.Time) {
	if s.closed() || !s.statsRefreshing.CompareAndSwap(false, true) {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.statsRefreshing.Store(false)
		err := s.sumSpan(s.life, key, from, to)
		if err != nil && s.life.Err() == nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("auditkit: summing stats in the background failed; stats sum the counts meanwhile", "error", err)
		}
	}()
}

// refreshStatsLater starts RefreshStats for a stats range in the background unless one is
// running; the range is capped to its last maxStatsBuckets hours.
func (s *Store) refreshStatsLater(from, to time.Time) {
	if s.closed() || !s.statsRefreshing.CompareAndSwap(false, true) {
		return
	}
	from = maxTime(from, to.Add(-maxStatsBuckets*time.Hour))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.statsRefreshing.Store(false)
		err := s.RefreshStats(s.life, from, to)
		if err != nil && s.life.Err() == nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("auditkit: counting stats in the background failed; stats count those hours from audit_logs meanwhile", "error", err)
		}
	}()
}

// statsTable returns the qualified name of one of the stats tables of migrations 0007 and 0008.
func (s *Store) statsTable(name string) string { return pgx.Identifier{s.schema, name}.Sanitize() }
