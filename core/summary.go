package core

import "time"

// BulkSummary describes the rows of one statement that were not recorded one by one because the
// statement changed more rows than the per-statement cap of an ORM integration.
type BulkSummary struct {
	Table       string   // the table the statement changed
	Kind        Kind     // the statement's kind: KindInsert, KindUpdate or KindDelete
	Affected    int      // rows the statement changed in all
	NotItemised []string // primary keys (as resource ids) of the rows without a record of their own
	Filter      string   // the statement's condition as SQL with placeholders, when known
	FilterArgs  []any    // the condition's bound values, masked where they could leak secrets
	Via         string   // for rows changed through a relation of another statement, its name
}

// Record returns the summary as a record of kind custom with the action "<table>.bulk_<kind>" and
// the metadata statement, affected, itemised, not_itemised and, when known, filter, filter_args and
// via; or nil when every row was itemised.
func (s BulkSummary) Record(at time.Time) *Record {
	if len(s.NotItemised) == 0 {
		return nil
	}
	meta := map[string]any{
		"statement":    string(s.Kind),
		"affected":     s.Affected,
		"itemised":     s.Affected - len(s.NotItemised),
		"not_itemised": s.NotItemised,
	}
	if s.Filter != "" {
		meta["filter"] = s.Filter
	}
	if len(s.FilterArgs) > 0 {
		meta["filter_args"] = s.FilterArgs
	}
	if s.Via != "" {
		meta["via"] = s.Via
	}
	return &Record{
		OccurredAt:   at,
		Kind:         KindCustom,
		Action:       s.Table + ".bulk_" + string(s.Kind),
		ResourceType: s.Table,
		Metadata:     meta,
	}
}
