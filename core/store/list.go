package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Order is the sort order of a query.
type Order string

// The orders. The zero value means NewestFirst.
const (
	NewestFirst Order = "newest" // occurred_at descending, then id descending
	OldestFirst Order = "oldest" // occurred_at ascending, then id ascending
)

// Query parameters besides the filter.
const (
	ParamSort   = "sort"
	ParamLimit  = "limit"
	ParamCursor = "cursor"
)

// Query is one page request.
type Query struct {
	Filter Filter
	Order  Order  // zero means NewestFirst
	Limit  int    // zero means Options.DefaultPageSize; at most Options.MaxPageSize
	Cursor string // from Page.NextCursor of the same query; empty for the first page
}

// Page is one page of records.
type Page struct {
	Records []*Record
	// NextCursor continues the query after the last record; empty when there is nothing more.
	NextCursor string
}

// ParseOrder reads the sort parameter: "newest" (the default when empty) or "oldest".
func ParseOrder(s string) (Order, error) {
	switch Order(s) {
	case "", NewestFirst:
		return NewestFirst, nil
	case OldestFirst:
		return OldestFirst, nil
	}
	return "", paramErr(ParamSort, "%q is not newest or oldest", s)
}

// ParseQuery reads a Query from query parameters: the filter (ParseFilter), sort, limit and
// cursor. The cursor is checked when the query runs, against the scope it runs in.
func (s *Store) ParseQuery(v url.Values) (Query, error) {
	f, err := ParseFilter(v)
	if err != nil {
		return Query{}, err
	}
	q := Query{Filter: f}
	one := func(p string) (string, error) {
		vals := v[p]
		switch {
		case len(vals) == 0:
			return "", nil
		case len(vals) > 1:
			return "", paramErr(p, "is given %d times; give it once", len(vals))
		case vals[0] == "":
			return "", paramErr(p, "is empty; leave it out for the default")
		}
		return vals[0], checkText(p, vals[0], maxTextLen)
	}
	sort, err := one(ParamSort)
	if err != nil {
		return Query{}, err
	}
	if q.Order, err = ParseOrder(sort); err != nil {
		return Query{}, err
	}
	limit, err := one(ParamLimit)
	if err != nil {
		return Query{}, err
	}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n < 1 || n > s.opts.MaxPageSize {
			return Query{}, paramErr(ParamLimit, "%q is not a page size between 1 and %d", limit, s.opts.MaxPageSize)
		}
		q.Limit = n
	}
	if q.Cursor, err = one(ParamCursor); err != nil {
		return Query{}, err
	}
	return q, nil
}

// pageQuery builds the statement of a page: the first need records of f in the page's order
// after its cursor.
type pageQuery func(f Filter, need int) *sqlBuilder

// queryPage runs the page query of f in order after the position after (nil for a first page),
// asking for limit+1 records, window by window on a partitioned table (page_window.go) for the
// filters a time index serves, decrypts what it returns, and returns at most limit of them with
// the cursor after the last when there are more.
func (s *Store) queryPage(ctx context.Context, sc Scope, f Filter, order Order, after *position, limit int, build pageQuery, binding, what string) (Page, error) {
	// Windows serve the filters that a scan of a time index evaluates as it goes: the page then
	// lies in the first window or the next few. A filter on a column with its own index (request,
	// trace, resource, actor, search) matches few records anywhere in time, and is answered by
	// one statement over every partition faster than by a window walk through them all.
	var bounds []time.Time
	if coveredByTenantTime(f) {
		bounds = s.pageBounds(ctx)
	}
	windows := newPageWindows(bounds, f, order, after, time.Now())
	page := Page{Records: make([]*Record, 0, min(limit, 64))}
	err := s.scoped(ctx, sc, func(db querier) error {
		for len(page.Records) <= limit {
			wf, ok := windows.window()
			if !ok {
				break
			}
			b := build(wf, limit+1-len(page.Records))
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

// customPlan makes PostgreSQL plan a query for its actual values every time (an unnamed
// statement, with its description cached by pgx). A cached generic plan cannot know how selective
// a search term, a tenant or a time range is: for full-text search it scans a tenant's time range
// in order and computes every row's document (tens of milliseconds) where the plan for the actual
// term intersects the search index with the tenant index (a few).
const customPlan = pgx.QueryExecModeCacheDescribe

// List returns one page of the records in scope that match q.Filter, in q.Order, after
// q.Cursor. Pages are keyset pages on (occurred_at, id): records inserted while a client pages
// through never cause a record to repeat or to be skipped; new records with a later time appear
// only on a new first page.
func (s *Store) List(ctx context.Context, sc Scope, q Query) (Page, error) {
	if err := sc.Validate(); err != nil {
		return Page{}, err
	}
	if err := q.Filter.Validate(); err != nil {
		return Page{}, err
	}
	q.Filter.normalize()
	order, err := ParseOrder(string(q.Order))
	if err != nil {
		return Page{}, err
	}
	limit := q.Limit
	switch {
	case limit == 0:
		limit = s.opts.DefaultPageSize
	case limit < 0 || limit > s.opts.MaxPageSize:
		return Page{}, paramErr(ParamLimit, "%d is not a page size between 1 and %d", limit, s.opts.MaxPageSize)
	}
	binding := cursorBinding(sc, order, q.Filter)
	var after *position
	if q.Cursor != "" {
		p, err := s.decodeCursor(q.Cursor, binding)
		if err != nil {
			return Page{}, err
		}
		after = &p
	}

	build := func(f Filter, need int) *sqlBuilder { return s.listSQL(sc, f, order, after, need-1) }
	return s.queryPage(ctx, sc, q.Filter, order, after, limit, build, binding, "list")
}

// listSQL builds the statement of one page: limit+1 records of f in scope, in order, after the
// given position.
func (s *Store) listSQL(sc Scope, f Filter, order Order, after *position, limit int) *sqlBuilder {
	b := &sqlBuilder{}
	// A tenant's page whose filter the tenant/time index covers finds its keys in the index alone
	// and then reads only the rows of the page, one by key each: otherwise every row of the range
	// that the filter rejects is read from the table first, one page read per row. The rows are
	// read in a LATERAL subquery with a LIMIT, which PostgreSQL cannot flatten into a join: it
	// must look each one up by key (and, on a partitioned table, in the one partition of its
	// time), where a join of the two would be free to read whole partitions for a hash join, as
	// it does on a partitioned table when it counts a key lookup once per partition.
	// A filter of the time range alone rejects nothing on the way (but the rare service records),
	// so the plain form reads the same rows, and is planned once instead of twice.
	keysFirst := !sc.AllTenants && coveredByTenantTime(f) && rejectsRows(f)
	if keysFirst {
		b.w("SELECT r.* FROM (SELECT id, occurred_at FROM ", s.logs)
	} else {
		b.w("SELECT ", selectColumns, " FROM ", s.logs)
	}
	s.where(b, sc, f)
	dir := "DESC"
	cmp := "<"
	if order == OldestFirst {
		dir, cmp = "ASC", ">"
	}
	if after != nil {
		b.w(" AND (occurred_at, id) ", cmp, " (", b.arg(after.at), ", ", b.arg(after.id), ")")
	}
	orderBy := " ORDER BY occurred_at " + dir + ", id " + dir
	b.w(orderBy, " LIMIT ", b.arg(limit+1))
	if keysFirst {
		b.w(") k CROSS JOIN LATERAL (SELECT ", selectColumns, " FROM ", s.logs, " l WHERE l.id = k.id AND l.occurred_at = k.occurred_at")
		// The time range again, so that on a partitioned table the lookups too are planned over
		// the range's partitions only.
		if !f.From.IsZero() {
			b.w(" AND l.occurred_at >= ", b.arg(f.From))
		}
		if !f.To.IsZero() {
			b.w(" AND l.occurred_at < ", b.arg(f.To))
		}
		b.w(" LIMIT 1) r ORDER BY k.occurred_at ", dir, ", k.id ", dir)
	}
	return b
}

// coveredByTenantTime reports whether the tenant/time index (migration 0007 adds kind, severity,
// status, ip, action and resource_type to it) can evaluate every condition of f. Values is the
// filter's complete encoding, so a field added to Filter is never taken for covered.
func coveredByTenantTime(f Filter) bool {
	f.From, f.To, f.Kinds, f.Severities, f.StatusMin, f.StatusMax = time.Time{}, time.Time{}, nil, nil, 0, 0
	f.IP, f.Action, f.ActionPrefix, f.ResourceType, f.IncludeMeta = netip.Prefix{}, "", "", "", false
	return len(f.Values()) == 0
}

// rejectsRows reports whether f has a condition besides its time range and the exclusion of the
// service's own records.
func rejectsRows(f Filter) bool {
	f.From, f.To, f.IncludeMeta = time.Time{}, time.Time{}, false
	return len(f.Values()) > 0
}

// Get returns the record with the given id if it is in scope, and ErrNotFound otherwise (also
// when it exists in another tenant: the answer does not tell the two apart).
func (s *Store) Get(ctx context.Context, sc Scope, id uuid.UUID) (*Record, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	var b sqlBuilder
	b.w("SELECT ", selectColumns, " FROM ", s.logs)
	s.where(&b, sc, Filter{IncludeMeta: true}) // by id, the service's own records too
	b.w(" AND id = ", b.arg(id), " LIMIT 1")
	var r *Record
	err := s.scoped(ctx, sc, func(db querier) error {
		var err error
		if r, err = scanRecord(db.QueryRow(ctx, b.sb.String(), b.args...)); err != nil {
			return err
		}
		return s.decryptRecords(ctx, db, r)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get: %w", err)
	}
	return r, nil
}
