package core

import (
	"encoding/json"
	"fmt"
)

// Columns are the audit_logs columns the writers fill, in the order of the values rowValues returns.
var Columns = []string{
	"id", "occurred_at", "kind", "action", "severity",
	"tenant_id", "tenant_slug",
	"actor_id", "actor_type", "actor_email", "actor_auth",
	"resource_type", "resource_id",
	"before", "after", "diff",
	"request_id", "method", "route", "path", "query", "status", "duration_us",
	"ip", "user_agent", "request_body", "response_body", "metadata", "version",
	"trace_id", "span_id",
}

// colVersion is the index of the version column in Columns.
const colVersion = 28

// rowValues encodes a redacted record as the values of one audit_logs row, typed for pgx's binary
// COPY: optional text as nil when empty, JSON documents as []byte, the address as a netip.Prefix.
// The Writer makes the same rows in one pass from records not yet redacted (rowBatch).
func rowValues(r *Record) ([]any, error) {
	var err error
	jsonOf := func(name string, v any, empty bool) []byte {
		if err != nil || empty {
			return nil
		}
		b, e := json.Marshal(v)
		if e != nil {
			err = fmt.Errorf("encoding %s of record %s: %w", name, r.ID, e)
			return nil
		}
		return b
	}
	d := rowDocs{
		before: jsonOf("before", r.Before, r.Before == nil),
		after:  jsonOf("after", r.After, r.After == nil),
		diff:   jsonOf("diff", r.Diff, r.Diff == nil),
		meta:   jsonOf("metadata", r.Metadata, len(r.Metadata) == 0),
	}
	if err != nil {
		return nil, err
	}
	if err := r.encodeQuery(&d); err != nil {
		return nil, err
	}
	return fillRow(make([]any, len(Columns)), r, &d, nil), nil
}
