package core

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// FuzzJSONBText holds jsonbText to PostgreSQL: for every valid JSON input the texts are identical, and
// jsonbText fails exactly when PostgreSQL refuses the document. Invalid JSON must fail without asking.
func FuzzJSONBText(f *testing.F) {
	for _, doc := range jsonbEdgeCases {
		f.Add([]byte(doc))
	}
	for _, v := range []any{
		map[string]any{"a": 1e21, "b": 1e-7, "c": 0.1, "d": 1 << 62, "e": uint64(math.MaxUint64), "f": -0.0},
		map[string]any{"é": "ünï\u2028cødé 😀 <&>", "ctl": "\x01\x1f\b\t\"\\", "": nil},
		[]any{[]any{[]any{}}, []any{1.5, "x", true, false}, map[string]any{"zz": 1, "y": 2}},
		map[string]any{"n": json.Number("12.340e1"), "m": json.Number("-0.0"), "k": json.Number("1E-3")},
		[]float64{math.MaxFloat64, math.SmallestNonzeroFloat64, 123456789.123456789, 1e300},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.URL())
	if err != nil {
		f.Fatalf("connect: %v; %s", err, pgtest.Hint)
	}
	f.Cleanup(func() { _ = conn.Close(context.Background()) })

	f.Fuzz(func(t *testing.T, doc []byte) {
		got, gerr := jsonbText(nil, doc)
		if !json.Valid(doc) {
			if gerr == nil {
				t.Fatalf("jsonbText(%q) = %q for invalid JSON", doc, got)
			}
			return
		}
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		want, refused, err := pgJSONBText(qctx, conn, string(doc))
		if err != nil {
			t.Fatalf("query: %v", err)
		}
		switch {
		case refused != nil && gerr == nil:
			t.Fatalf("jsonbText(%q) = %q, PostgreSQL refuses it: %v", doc, got, refused)
		case refused == nil && gerr != nil:
			t.Fatalf("jsonbText(%q): %v, PostgreSQL prints %q", doc, gerr, want)
		case string(got) != want:
			t.Fatalf("jsonbText(%q)\n got %q\nwant %q", doc, got, want)
		}
	})
}
