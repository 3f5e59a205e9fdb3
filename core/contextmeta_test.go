package core_test

import (
	"context"
	"testing"

	"github.com/auditkit/auditkit/core"
)

// WithMetadata reaches the records of every path that takes identity from a context (the
// request's Collector through Dispatch, and StampFromContext), merges nested calls, and never
// overrides a key the record has or changes the caller's map.
func TestWithMetadata(t *testing.T) {
	ctx := core.WithMetadata(context.Background(), map[string]any{"reverted_from": "a", "why": "outer"})
	ctx = core.WithMetadata(ctx, map[string]any{"why": "inner"})
	if m := core.MetadataFromContext(ctx); m["reverted_from"] != "a" || m["why"] != "inner" {
		t.Fatalf("merged: %v", m)
	}

	own := map[string]any{"why": "the record's own"}
	r := &core.Record{Metadata: own}
	core.StampFromContext(ctx, r)
	if r.Metadata["reverted_from"] != "a" || r.Metadata["why"] != "the record's own" || len(own) != 1 {
		t.Fatalf("stamped: %v (the caller's map: %v)", r.Metadata, own)
	}

	col := core.NewCollector()
	rec := &core.Record{}
	if err := core.Dispatch(core.NewContext(ctx, col), nil, rec); err != nil {
		t.Fatal(err)
	}
	if got := col.Records(); len(got) != 1 || got[0].Metadata["reverted_from"] != "a" {
		t.Fatalf("through the collector: %+v", got)
	}

	plain := &core.Record{}
	core.StampFromContext(context.Background(), plain)
	if plain.Metadata != nil || core.MetadataFromContext(context.Background()) != nil {
		t.Fatalf("a context without metadata added some: %v", plain.Metadata)
	}
}
