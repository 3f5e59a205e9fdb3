package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Full-text pages.
//
// The search index finds the records of a word in every tenant and at every time: for a rare
// word that is the fastest plan, but a common word (one of a handful of values that a fifth of all
// records carry) yields hundreds of thousands of records, of which the page keeps fifty after
// filtering them by tenant and sorting them. For such a word, reading the tenant's records in the
// page's order from the tenant/time index and checking each one's search document finds the page
// after a few hundred records.
//
// So a tenant's full-text page whose other conditions the tenant/time index covers first walks
// that index, window by window on a partitioned table (page_window.go), reading at most a budget
// of records in proportion to the page size. When the budget is spent before the page is full, the
// word is rare in the tenant, and the rest of the page is asked of the search index, after the
// last record the walk read. The walk read every record up to that one in the page's order, and
// the rest starts strictly after it, so the page holds exactly the records of the single query,
// in its order.

// searchWalkPerRecord is how many records the walk reads, per record the page asks for, before
// the rest of the page is asked of the search index: words that one record in this many or more
// of the tenant's records carry are found by the walk.
const searchWalkPerRecord = 16

// searchWalkMin is the least budget of a walk, for small pages.
const searchWalkMin = 256

// walksSearch reports whether a page of f in scope sc is read by a walk of the tenant/time index
// first: a tenant's full-text page whose other conditions that index covers.
func walksSearch(sc Scope, f Filter) bool {
	if sc.AllTenants || f.Search == "" {
		return false
	}
	f.Search = ""
	return coveredByTenantTime(f)
}

// searchPage is queryPage for a full-text page that walksSearch accepts.
func (s *Store) searchPage(ctx context.Context, sc Scope, f Filter, order Order, after *position, limit int, binding, what string) (Page, error) {
	keys := f
	keys.Search = ""
	windows := newPageWindows(s.pageBounds(ctx), keys, order, after, time.Now())
	budget := max(searchWalkMin, (limit+1)*searchWalkPerRecord)
	page := Page{Records: make([]*Record, 0, min(limit, 64))}
	err := s.scoped(ctx, sc, func(db querier) error {
		var rest *position // where the search index takes over; nil while the walk serves
		for len(page.Records) <= limit {
			wf, ok := windows.window()
			if !ok {
				break
			}
			need := limit + 1 - len(page.Records)
			had := len(page.Records)
			b := s.searchWalkSQL(sc, wf, f.Search, order, after, budget, need)
			var err error
			page.Records, err = queryRecords(ctx, db, page.Records, b.sb.String(), append([]any{customPlan}, b.args...)...)
			if err != nil {
				return err
			}
			if len(page.Records)-had == need {
				break
			}
			// The window ran out of matches: either it holds fewer records than the budget, all
			// read, or the budget is spent.
			read, last, err := s.searchWalkEnd(ctx, db, sc, wf, order, after, budget)
			if err != nil {
				return err
			}
			if read < budget {
				budget -= read
				continue
			}
			rest = &last
			break
		}
		if rest != nil && len(page.Records) <= limit {
			b := s.listSQL(sc, f, order, rest, limit-len(page.Records))
			var err error
			page.Records, err = queryRecords(ctx, db, page.Records, b.sb.String(), append([]any{customPlan}, b.args...)...)
			if err != nil {
				return err
			}
		}
		return s.decryptRecords(ctx, db, page.Records...)
	})
	if err != nil {
		return Page{}, fmt.Errorf("store: %s: %w", what, err)
	}
	if len(page.Records) > limit {
		page.Records = page.Records[:limit]
		last := page.Records[limit-1]
		page.NextCursor = s.encodeCursor(position{at: last.OccurredAt, id: last.ID}, binding)
	}
	return page, nil
}

// searchWalkKeys writes the keys of the first budget records of f in scope (f without its
// search) in order after the position after, ordered.
func (s *Store) searchWalkKeys(b *sqlBuilder, sc Scope, f Filter, order Order, after *position, budget int) (dir string) {
	dir, cmp := "DESC", "<"
	if order == OldestFirst {
		dir, cmp = "ASC", ">"
	}
	b.w("SELECT id, occurred_at FROM ", s.logs)
	s.where(b, sc, f)
	if after != nil {
		b.w(" AND (occurred_at, id) ", cmp, " (", b.arg(after.at), ", ", b.arg(after.id), ")")
	}
	b.w(" ORDER BY occurred_at ", dir, ", id ", dir, " LIMIT ", b.arg(budget))
	return dir
}

// searchWalkSQL builds the walk of one window: of the first budget records of f (without its
// search) in order after the position after, the first need whose search document matches
// search. The records are read one by key each in a LATERAL subquery, as listSQL's keys-first
// form does, and the outer LIMIT stops the walk as soon as the page is full.
func (s *Store) searchWalkSQL(sc Scope, f Filter, search string, order Order, after *position, budget, need int) *sqlBuilder {
	b := &sqlBuilder{}
	b.w("SELECT r.* FROM (")
	dir := s.searchWalkKeys(b, sc, f, order, after, budget)
	b.w(") k CROSS JOIN LATERAL (SELECT ", selectColumns, " FROM ", s.logs, " l WHERE l.id = k.id AND l.occurred_at = k.occurred_at")
	if !f.From.IsZero() {
		b.w(" AND l.occurred_at >= ", b.arg(f.From))
	}
	if !f.To.IsZero() {
		b.w(" AND l.occurred_at < ", b.arg(f.To))
	}
	s.searchCond(b, search)
	b.w(" LIMIT 1) r ORDER BY k.occurred_at ", dir, ", k.id ", dir, " LIMIT ", b.arg(need))
	return b
}

// searchWalkEnd returns how many records the walk of a window read (at most budget), and the
// last of them in the page's order; the keys come from the index alone.
func (s *Store) searchWalkEnd(ctx context.Context, db querier, sc Scope, f Filter, order Order, after *position, budget int) (int, position, error) {
	b := &sqlBuilder{}
	b.w("SELECT count(*) OVER (), occurred_at, id FROM (")
	s.searchWalkKeys(b, sc, f, order, after, budget)
	rev := "ASC"
	if order == OldestFirst {
		rev = "DESC"
	}
	b.w(") k ORDER BY occurred_at ", rev, ", id ", rev, " LIMIT 1")
	var (
		n    int
		last position
	)
	err := db.QueryRow(ctx, b.sb.String(), append([]any{customPlan}, b.args...)...).Scan(&n, &last.at, &last.id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, position{}, nil
	}
	return n, last, err
}
