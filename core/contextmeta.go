package core

import (
	"context"
	"maps"
)

// metadataKey carries the metadata of WithMetadata.
type metadataKey struct{}

// WithMetadata returns a context whose records carry m in their metadata: the records the ORM
// integrations make for changes written with it (in every delivery mode) and the records Log
// writes with it. A key the record already has keeps its value. Nested calls merge, the inner
// call's keys winning. Reverting a change this way marks the new change with the record it undid
// (gormaudit.Revert and entaudit.Revert set "reverted_from").
//
// The values go through the Redactor with the rest of the metadata.
func WithMetadata(ctx context.Context, m map[string]any) context.Context {
	if len(m) == 0 {
		return ctx
	}
	merged := maps.Clone(MetadataFromContext(ctx))
	if merged == nil {
		merged = make(map[string]any, len(m))
	}
	maps.Copy(merged, m)
	return context.WithValue(ctx, metadataKey{}, merged)
}

// MetadataFromContext returns the metadata WithMetadata stored in ctx, or nil. The map is shared:
// do not modify it.
func MetadataFromContext(ctx context.Context) map[string]any {
	if m, ok := ctx.Value(metadataKey{}).(map[string]any); ok {
		return m
	}
	if inner, ok := ctx.Value(RequestContextKey).(context.Context); ok && inner != nil && inner != ctx {
		m, _ := inner.Value(metadataKey{}).(map[string]any)
		return m
	}
	return nil
}

// stampMetadata adds the metadata of WithMetadata to r, keeping the keys r has. The record's map
// is copied, never changed in place: the caller may share it.
func stampMetadata(ctx context.Context, r *Record) {
	m := MetadataFromContext(ctx)
	if len(m) == 0 {
		return
	}
	out := make(map[string]any, len(r.Metadata)+len(m))
	maps.Copy(out, m)
	maps.Copy(out, r.Metadata)
	r.Metadata = out
}
