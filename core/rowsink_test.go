package core_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditkit/auditkit/core"
)

// collectSink keeps, for each record it is given, the row AppendRecordRow writes and whether
// the record still carried its maps of values.
type collectSink struct {
	mu       sync.Mutex
	rows     map[string][]byte
	withMaps int
}

func (s *collectSink) Write(_ context.Context, recs []*core.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		row, err := core.AppendRecordRow(nil, r)
		if err != nil {
			return &core.RejectedError{Index: -1, Err: err}
		}
		s.rows[r.ID.String()] = row
		if r.Before != nil || r.After != nil || r.Diff != nil || r.Metadata != nil {
			s.withMaps++
		}
	}
	return nil
}

// rowTakingSink is collectSink as a core.RowSink.
type rowTakingSink struct{ collectSink }

func (*rowTakingSink) TakesRows() {}

// TestRowSinkTakesTheRowsAPlainSinkWrites: a sink that declares itself a RowSink is given records
// that carry their rows and no maps, and the rows it forwards are, byte for byte, those a sink
// that takes records with their maps forwards for the same records (redacted by the same rules,
// with the spool on and off).
func TestRowSinkTakesTheRowsAPlainSinkWrites(t *testing.T) {
	for _, spool := range []bool{false, true} {
		mk := func() []*core.Record {
			var out []*core.Record
			for i := range 200 {
				r := sampleRecord(i)
				r.ID = uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "row-sink-%d", i)) // the same in both runs
				r.OccurredAt = time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.UTC).Add(time.Duration(i) * time.Second)
				if i%3 == 0 {
					r.Kind, r.Method, r.Route, r.Path, r.Status = core.KindHTTP, "GET", "/x/:id", "/x/1", 200
					r.IP = netip.MustParseAddr("2001:db8::7")
					r.Query = map[string][]string{"q": {"a<b>&c", "ü"}, "api_key": {"k"}}
				}
				if i%5 == 0 {
					r.Metadata = map[string]any{"password": "hunter2", "nested": map[string]any{"token": "Bearer abc.def.ghi"}}
				}
				out = append(out, r)
			}
			return out
		}
		plain := &collectSink{rows: map[string][]byte{}}
		rowed := &rowTakingSink{collectSink{rows: map[string][]byte{}}}
		for _, s := range []core.Sink{plain, rowed} {
			opts := core.WriterOptions{BatchSize: 64, FlushInterval: time.Millisecond}
			if spool {
				opts.Spool.Dir = t.TempDir()
			}
			w, err := core.OpenWriter(s, opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range mk() {
				if err := w.Enqueue(r); err != nil {
					t.Fatal(err)
				}
			}
			closeWriter(t, w)
		}
		if len(plain.rows) != 200 || len(rowed.rows) != 200 {
			t.Fatalf("spool %v: %d and %d records forwarded, want 200 each", spool, len(plain.rows), len(rowed.rows))
		}
		if rowed.withMaps != 0 {
			t.Fatalf("spool %v: the RowSink was given %d records with their maps", spool, rowed.withMaps)
		}
		if !spool && plain.withMaps == 0 {
			t.Fatal("the plain sink was given no record with its maps")
		}
		for id, want := range plain.rows {
			if got := rowed.rows[id]; !bytes.Equal(got, want) {
				t.Fatalf("spool %v: record %s: the RowSink forwarded\n%q\nwhere a plain sink forwards\n%q", spool, id, got, want)
			}
		}
		if bytes.Contains(rowed.rows[mk()[0].ID.String()], []byte("hunter2")) {
			t.Fatal("a secret reached the RowSink")
		}
	}
}
