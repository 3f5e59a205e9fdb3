package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/core"
)

// Errors of the history queries, in addition to ErrNotFound (no record of the row in scope).
var (
	// ErrBeforeHistory is wrapped by the *BeforeHistoryError AsOf returns when the row's first
	// record is later than the time asked about.
	ErrBeforeHistory = errors.New("the row's history starts after that time")
	// ErrImageUnknown is returned by AsOf when the record that set the row's state at that time
	// carries no after image (an update recorded with metadata after_unknown).
	ErrImageUnknown = errors.New("the row's image at that time is unknown: its record has no after image")
)

// BeforeHistoryError says that a row's history starts after the time asked about: the row did
// not exist then, or it changed only without being recorded.
type BeforeHistoryError struct {
	ResourceType string
	ResourceID   string
	At           time.Time // the time asked about
	Start        time.Time // the time of the row's first record
}

// Error names the row and both times.
func (e *BeforeHistoryError) Error() string {
	return fmt.Sprintf("store: %s %s: %v: history starts at %s, after %s", e.ResourceType, e.ResourceID,
		ErrBeforeHistory, e.Start.Format(time.RFC3339Nano), e.At.Format(time.RFC3339Nano))
}

// Unwrap lets errors.Is(err, ErrBeforeHistory) match.
func (e *BeforeHistoryError) Unwrap() error { return ErrBeforeHistory }

// historyKinds are the kinds of the records that change a row and carry its images.
var historyKinds = []core.Kind{core.KindInsert, core.KindUpdate, core.KindDelete}

// HistoryQuery is one page request of a row's history.
type HistoryQuery struct {
	Order  Order  // zero means NewestFirst
	Limit  int    // zero means Options.DefaultPageSize; at most Options.MaxPageSize
	Cursor string // from the NextCursor of the same history; empty for the first page
}

// historyFilter is the filter of the records of one row: its inserts, updates and deletes.
func historyFilter(resourceType, id string) Filter {
	return Filter{ResourceType: resourceType, ResourceID: id, Kinds: historyKinds}
}

// checkRow refuses an empty or unstorable resource type or id.
func checkRow(resourceType, id string) error {
	switch {
	case resourceType == "":
		return paramErr(ParamResourceType, "is required")
	case id == "":
		return paramErr(ParamResourceID, "is required")
	}
	if err := checkText(ParamResourceType, resourceType, maxTextLen); err != nil {
		return err
	}
	return checkText(ParamResourceID, id, maxTextLen)
}

// History returns one page of the changes of one database row in scope: the insert, update and
// delete records whose resource type and id are the row's table and primary key (as the ORM
// integrations write them; a composite key is its JSON object with sorted keys), each with its
// actor, time, request id, images and diff. Pages are keyset pages like List's, on the same
// cursors: a cursor belongs to the scope, row and order it was made for.
//
// A row changed by a bulk statement past the integration's MaxRowsPerStatement has no record of
// its own for that change (the summary record lists its id): History does not show it.
func (s *Store) History(ctx context.Context, sc Scope, resourceType, id string, q HistoryQuery) (Page, error) {
	if err := checkRow(resourceType, id); err != nil {
		return Page{}, err
	}
	return s.historyPage(ctx, sc, historyFilter(resourceType, id), q)
}

// historyPage is List for the records of one row, with List's cursors (the same position and
// binding), but a statement that reads a bounded part of the row's history however long it is:
// the time of the record after the page comes first, from limit+1 entries of the (tenant,
// resource type, resource id, occurred_at) index, and only the records from the cursor to that
// time are sorted by (occurred_at, id). One statement ordered by (occurred_at, id) alone would
// read and sort every version of the row on the far side of the cursor, since the index does not
// hold the id.
func (s *Store) historyPage(ctx context.Context, sc Scope, f Filter, q HistoryQuery) (Page, error) {
	if err := sc.Validate(); err != nil {
		return Page{}, err
	}
	if err := f.Validate(); err != nil {
		return Page{}, err
	}
	f.normalize()
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
	binding := cursorBinding(sc, order, f)
	var after *position
	if q.Cursor != "" {
		p, err := s.decodeCursor(q.Cursor, binding)
		if err != nil {
			return Page{}, err
		}
		after = &p
	}
	dir, cmp, atCmp, bound, unbounded := "DESC", "<", "<=", ">=", "-infinity"
	if order == OldestFirst {
		dir, cmp, atCmp, bound, unbounded = "ASC", ">", ">=", "<=", "infinity"
	}
	build := func(f Filter, need int) *sqlBuilder {
		var b sqlBuilder
		rest := func() {
			s.where(&b, sc, f)
			if after != nil {
				// The redundant condition on occurred_at alone is the one the index can use.
				b.w(" AND occurred_at ", atCmp, " ", b.arg(after.at), " AND (occurred_at, id) ", cmp, " (", b.arg(after.at), ", ", b.arg(after.id), ")")
			}
		}
		b.w("SELECT ", selectColumns, " FROM ", s.logs)
		rest()
		b.w(" AND occurred_at ", bound, " COALESCE((SELECT occurred_at FROM ", s.logs)
		rest()
		b.w(" ORDER BY occurred_at ", dir, " LIMIT 1 OFFSET ", b.arg(need-1), "), '", unbounded, "'::timestamptz)")
		b.w(" ORDER BY occurred_at ", dir, ", id ", dir, " LIMIT ", b.arg(need))
		return &b
	}
	return s.queryPage(ctx, sc, f, order, after, limit, build, binding, "history")
}

// FieldChange is one change of one field of a row: the record that made it and the field's
// values before and after it (JSON; null for a field that was unset or did not exist). A
// redacted field shows core.Redacted on both sides.
type FieldChange struct {
	Record *Record         `json:"record"`
	From   json.RawMessage `json:"from"`
	To     json.RawMessage `json:"to"`
}

// FieldPage is one page of a field's history.
type FieldPage struct {
	Changes []FieldChange
	// NextCursor continues the history after the last change; empty when there is nothing more.
	NextCursor string
}

// FieldHistory returns one page of the changes of one field (column) of a row: every record of
// the row whose diff names the field, with the field's values on both sides. It answers "every
// value this email had" and "who changed it, when". Paging is History's.
func (s *Store) FieldHistory(ctx context.Context, sc Scope, resourceType, id, field string, q HistoryQuery) (FieldPage, error) {
	if err := checkRow(resourceType, id); err != nil {
		return FieldPage{}, err
	}
	if err := checkField(field); err != nil {
		var pe *ParamError
		if errors.As(err, &pe) {
			return FieldPage{}, paramErr(ParamField, "%s", pe.Problem)
		}
		return FieldPage{}, err
	}
	f := historyFilter(resourceType, id)
	f.Changed = []string{field}
	page, err := s.historyPage(ctx, sc, f, q)
	if err != nil {
		return FieldPage{}, err
	}
	out := FieldPage{Changes: make([]FieldChange, 0, len(page.Records)), NextCursor: page.NextCursor}
	for _, r := range page.Records {
		var d map[string]struct {
			From json.RawMessage `json:"from"`
			To   json.RawMessage `json:"to"`
		}
		if err := json.Unmarshal(r.Diff, &d); err != nil {
			return FieldPage{}, fmt.Errorf("store: field history: record %s: diff: %w", r.ID, err)
		}
		c := d[field]
		out.Changes = append(out.Changes, FieldChange{Record: r, From: jsonOrNull(c.From), To: jsonOrNull(c.To)})
	}
	return out, nil
}

func jsonOrNull(m json.RawMessage) json.RawMessage {
	if len(m) == 0 {
		return json.RawMessage("null")
	}
	return m
}

// Snapshot is a row as it was at a time: the image the last record at or before that time left.
type Snapshot struct {
	// At is the time asked about.
	At time.Time `json:"at"`
	// Image is the row's image: column names to values, as the ORM integration stored them
	// (redacted fields as core.Redacted). For a deleted row it is the row's last image.
	Image json.RawMessage `json:"image"`
	// Deleted reports that the row was deleted at At (a hard delete, or a soft delete whose
	// image still shows the row).
	Deleted bool `json:"deleted"`
	// Record is the record that set the row's state: its insert, update or delete.
	Record *Record `json:"record"`
}

// Fields decodes Image into a map (numbers as json.Number, so that none loses precision).
func (sn *Snapshot) Fields() (map[string]any, error) {
	return decodeImage(sn.Image)
}

func decodeImage(img json.RawMessage) (map[string]any, error) {
	if len(img) == 0 || bytes.Equal(img, []byte("null")) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(img))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("store: the image is not a JSON object: %w", err)
	}
	return m, nil
}

// AsOf returns the row as it was at t: the after image of its last record at or before t. The
// query reads one record through the (tenant, resource type, resource id, time) index, however
// long the row's history.
//
//   - A row deleted at t returns its last image (a hard delete's before image, a soft delete's
//     after image) with Deleted set.
//   - A row whose first record is later than t returns a *BeforeHistoryError (errors.Is
//     ErrBeforeHistory) naming when its history starts.
//   - A row without any record in scope returns ErrNotFound.
//   - A row whose last record before t carries no after image returns ErrImageUnknown.
func (s *Store) AsOf(ctx context.Context, sc Scope, resourceType, id string, t time.Time) (*Snapshot, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	if err := checkRow(resourceType, id); err != nil {
		return nil, err
	}
	if t.IsZero() {
		return nil, paramErr(ParamAsOf, "is required")
	}
	t = t.UTC()
	var rec, first *Record
	err := s.scoped(ctx, sc, func(db querier) error {
		var err error
		if rec, err = s.rowRecordAt(ctx, db, sc, resourceType, id, t, false); err != nil || rec != nil {
			if err == nil {
				err = s.decryptRecords(ctx, db, rec)
			}
			return err
		}
		first, err = s.rowRecordAt(ctx, db, sc, resourceType, id, t, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: as of: %w", err)
	}
	if rec == nil {
		if first == nil {
			return nil, ErrNotFound
		}
		return nil, &BeforeHistoryError{ResourceType: resourceType, ResourceID: id, At: t, Start: first.OccurredAt}
	}
	return snapshotOf(rec, t)
}

// snapshotOf makes the snapshot that rec, the last record of a row at t, leaves.
func snapshotOf(rec *Record, t time.Time) (*Snapshot, error) {
	sn := &Snapshot{At: t, Record: rec, Image: rec.After}
	isNull := func(m json.RawMessage) bool { return len(m) == 0 || bytes.Equal(m, []byte("null")) }
	switch rec.Kind {
	case core.KindDelete:
		sn.Deleted = true
		if isNull(sn.Image) {
			sn.Image = rec.Before
		}
	default:
		if isNull(sn.Image) {
			return nil, fmt.Errorf("store: as of: %s %s at %s: record %s: %w", rec.ResourceType, rec.ResourceID,
				t.Format(time.RFC3339Nano), rec.ID, ErrImageUnknown)
		}
	}
	return sn, nil
}

// rowRecordAt returns the last record of the row at or before t, or with after the first record
// after t; nil when there is none.
//
// The time comes first, from a subquery that reads one entry of the (tenant, resource type,
// resource id, occurred_at) index from t on and stops; the id only breaks ties among the records
// of that microsecond. Ordering by (occurred_at, id) in one query would make PostgreSQL read and
// sort every version of the row on that side of t, since the index does not hold the id.
func (s *Store) rowRecordAt(ctx context.Context, db querier, sc Scope, resourceType, id string, t time.Time, after bool) (*Record, error) {
	cmp, dir := " <= ", " DESC"
	if after {
		cmp, dir = " > ", ""
	}
	f := historyFilter(resourceType, id)
	var b sqlBuilder
	b.w("SELECT ", selectColumns, " FROM ", s.logs)
	s.where(&b, sc, f)
	b.w(" AND occurred_at = (SELECT occurred_at FROM ", s.logs)
	s.where(&b, sc, f)
	b.w(" AND occurred_at", cmp, b.arg(t), " ORDER BY occurred_at", dir, " LIMIT 1) ORDER BY id", dir, " LIMIT 1")
	// Planned for the actual time (customPlan): on a partitioned table a generic plan may append
	// the partitions' index scans and sort all the row's versions before t.
	r, err := scanRecord(db.QueryRow(ctx, b.sb.String(), append([]any{customPlan}, b.args...)...))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return r, err
}

// RowDiff is the net change of a row between two times.
type RowDiff struct {
	// From and To are the row at the two times; nil where the row did not exist yet (its history
	// starts later).
	From *Snapshot `json:"from"`
	To   *Snapshot `json:"to"`
	// Changes holds the fields whose values differ between the two images. A row that did not
	// exist, or was deleted, counts as an empty image. A redacted field that changed in between
	// shows with both sides core.Redacted, even where its masks are equal.
	Changes map[string]core.Change `json:"changes"`
}

// Diff returns the net change of a row between t1 and t2 (t1 not after t2): its images at both
// times (AsOf) compared field by field. Changes that were undone in between do not show.
func (s *Store) Diff(ctx context.Context, sc Scope, resourceType, id string, t1, t2 time.Time) (*RowDiff, error) {
	if t1.IsZero() || t2.IsZero() {
		return nil, paramErr("from", "both times are required")
	}
	if t2.Before(t1) {
		return nil, paramErr("to", "%s is before from %s", t2.Format(time.RFC3339Nano), t1.Format(time.RFC3339Nano))
	}
	at := func(t time.Time) (*Snapshot, map[string]any, error) {
		sn, err := s.AsOf(ctx, sc, resourceType, id, t)
		if errors.Is(err, ErrBeforeHistory) {
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if sn.Deleted {
			return sn, nil, nil
		}
		m, err := sn.Fields()
		return sn, m, err
	}
	from, before, err := at(t1)
	if err != nil {
		return nil, err
	}
	to, after, err := at(t2)
	if err != nil {
		return nil, err
	}
	d := &RowDiff{From: from, To: to, Changes: core.Diff(before, after, nil)}
	if d.Changes == nil {
		d.Changes = map[string]core.Change{}
	}
	// Equal masks hide a change: ask the diffs in between which masked fields changed.
	var masked []string
	for k, v := range after {
		if before[k] == core.Redacted && v == core.Redacted {
			masked = append(masked, k)
		}
	}
	if len(masked) == 0 {
		return d, nil
	}
	changed, err := s.changedBetween(ctx, sc, resourceType, id, t1, t2, masked)
	if err != nil {
		return nil, err
	}
	for _, k := range changed {
		d.Changes[k] = core.Change{From: core.Redacted, To: core.Redacted}
	}
	return d, nil
}

// changedBetween returns which of fields the diffs of the row's records in (t1, t2] name.
func (s *Store) changedBetween(ctx context.Context, sc Scope, resourceType, id string, t1, t2 time.Time, fields []string) ([]string, error) {
	var b sqlBuilder
	b.w("SELECT DISTINCT k FROM ", s.logs, " l, LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof(l.diff) = 'object' THEN l.diff ELSE '{}' END) k")
	s.where(&b, sc, historyFilter(resourceType, id))
	b.w(" AND occurred_at > ", b.arg(t1), " AND occurred_at <= ", b.arg(t2), " AND k = ANY(", b.arg(fields), "::text[])")
	var out []string
	err := s.scoped(ctx, sc, func(db querier) error {
		rows, err := db.Query(ctx, b.sb.String(), b.args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: diff: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// ParamField is the query parameter of the field whose history is asked for (GET
// /resources/{type}/{id}/history?field=...).
const ParamField = "field"

// ParamAsOf is the query parameter of the time a row is read at (GET
// /resources/{type}/{id}/history?as_of=...).
const ParamAsOf = "as_of"

// IsMasked reports whether a value of a stored image (decoded with json.Number numbers, as
// Snapshot.Fields decodes) is, or holds, a mask that stands for the row's value: core.Redacted or
// a secret replaced in place, a key moved to "[REDACTED KEY n]", core.ErasedValue, a value still
// encrypted (core.EncryptedPrefix), or a value the redactor could not encode or descend into. A
// revert never writes such a value back.
func IsMasked(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.Contains(x, "[REDACTED") || x == core.ErasedValue || strings.HasPrefix(x, core.EncryptedPrefix) ||
			strings.HasPrefix(x, "[unencodable: ") || x == "[too deep]"
	case []any:
		return slices.ContainsFunc(x, IsMasked)
	case map[string]any:
		for k, e := range x {
			if strings.HasPrefix(k, "[REDACTED KEY") || IsMasked(e) {
				return true
			}
		}
	}
	return false
}
