package core

import (
	"encoding/json"
	"fmt"
	"net/netip"
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
	before := jsonOf("before", r.Before, r.Before == nil)
	after := jsonOf("after", r.After, r.After == nil)
	diff := jsonOf("diff", r.Diff, r.Diff == nil)
	query := jsonOf("query", r.Query, len(r.Query) == 0)
	meta := jsonOf("metadata", r.Metadata, len(r.Metadata) == 0)
	if err != nil {
		return nil, err
	}
	var ip any
	if r.IP.IsValid() {
		a := r.IP.Unmap()
		ip = netip.PrefixFrom(a, a.BitLen())
	}
	var status, duration any
	if r.Kind == KindHTTP || r.Status != 0 {
		status = int32(r.Status)
		duration = r.Duration.Microseconds()
	}
	action := r.Action
	if action == "" {
		action = DefaultAction(r.Kind, r.ResourceType)
	}
	return []any{
		r.ID, r.OccurredAt, string(r.Kind), action, string(r.Severity),
		text(r.Tenant.ID), text(r.Tenant.Slug),
		text(r.Actor.ID), string(r.Actor.Type), text(r.Actor.Email), text(r.Actor.Auth),
		text(r.ResourceType), text(r.ResourceID),
		before, after, diff,
		text(r.RequestID), text(r.Method), text(r.Route), text(r.Path), query, status, duration,
		ip, text(r.UserAgent), bodyJSON(r.RequestBody), bodyJSON(r.ResponseBody), meta, int16(RecordVersion),
		text(r.TraceID), text(r.SpanID),
	}, nil
}

func text(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// bodyJSON returns the JSON document of a body that Redactor.Record has already converted.
func bodyJSON(b *Body) any {
	if b == nil || len(b.Data) == 0 {
		return nil
	}
	return b.Data
}
