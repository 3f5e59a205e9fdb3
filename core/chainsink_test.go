package core

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// chainBatch returns n records of writer p, normalized, over the three chains of chainTenants.
func chainBatch(p string, n int) []*Record {
	recs := make([]*Record, n)
	for i := range recs {
		recs[i] = chainRecord(p, i)
		recs[i].normalize(time.Now())
	}
	return recs
}

// TestChainLinkedAhead: once a sink knows its chains' heads, two goroutines writing batches of
// the same tenants at once link them ahead of their transactions, and the chains stay unbroken:
// every record stored once, seqs without gaps, every hash as Verify recomputes it.
func TestChainLinkedAhead(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	sink := NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema})
	if err := sink.Write(ctx, chainBatch("first", 6)); err != nil {
		t.Fatal(err)
	}
	if n := sink.ahead.Load(); n != 0 {
		t.Fatalf("%d batches linked ahead before any head was known", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*10)
	for g := range 2 {
		wg.Go(func() {
			for b := range 10 {
				errs <- sink.Write(ctx, chainBatch(string(rune('a'+g))+string(rune('0'+b)), 30))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Nothing else appends to the chains and no batch fails: every batch after the first is
	// linked ahead.
	if n := sink.ahead.Load(); n != 20 {
		t.Fatalf("%d of 20 batches linked ahead, want all", n)
	}
	if n := db.Count(t); n != 6+2*10*30 {
		t.Fatalf("audit_logs has %d rows, want %d", n, 6+2*10*30)
	}
	lengths := verifyChains(t, db.Pool)
	if lengths["t_alpha"] != 202 || lengths["t_beta"] != 202 || lengths[""] != 202 {
		t.Fatalf("chain lengths %v, want 202 each", lengths)
	}
}

// TestChainLinkedAheadHeadMoved: a batch linked after heads the database does not hold (another
// sink appended to the chains, or a batch linked before it was never stored) is not stored as
// linked; it is stored after the database's heads instead, and the chains stay unbroken.
func TestChainLinkedAheadHeadMoved(t *testing.T) {
	ctx := context.Background()
	t.Run("another sink", func(t *testing.T) {
		db := pgtest.New(t)
		a := NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema})
		b := NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema})
		for i, w := range []*PostgresSink{a, b, a, a} {
			if err := w.Write(ctx, chainBatch(string(rune('p'+i)), 9)); err != nil {
				t.Fatal(err)
			}
		}
		// a's second batch found its cached heads moved by b; its third was linked ahead.
		if n := a.ahead.Load(); n != 1 {
			t.Fatalf("a linked %d batches ahead, want 1", n)
		}
		if lengths := verifyChains(t, db.Pool); lengths["t_alpha"] != 12 || lengths["t_beta"] != 12 || lengths[""] != 12 {
			t.Fatalf("chain lengths %v, want 12 each", lengths)
		}
	})
	t.Run("batch before it not stored", func(t *testing.T) { linkedAfterLost(t, encodeRows) })
	// The rows the Writer makes for a chained sink have room for their chain columns, which link
	// writes in place: linked ahead, then again after the heads were read, they hold the second.
	t.Run("rows with room, linked twice", func(t *testing.T) {
		linkedAfterLost(t, func(recs []*Record) ([][]any, error) {
			rb := newRowBatch(NewRedactor(nil, nil), len(recs))
			rb.chain()
			rows := make([][]any, len(recs))
			for i, r := range recs {
				row, err := rb.row(r)
				if err != nil {
					return nil, err
				}
				if cap(row) != len(row)+len(ChainColumns) {
					t.Fatalf("a row of %d values has room for %d", len(row), cap(row))
				}
				rows[i] = row
			}
			return rows, nil
		})
	})
}

// linkedAfterLost writes a batch linked ahead after a batch that was linked and then lost: it is
// not stored linked ahead, and is stored by reading the heads, its rows made by encode.
func linkedAfterLost(t *testing.T, encode func([]*Record) ([][]any, error)) {
	ctx := context.Background()
	db := pgtest.New(t)
	s := NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema})
	if err := s.Write(ctx, chainBatch("first", 3)); err != nil {
		t.Fatal(err)
	}
	// A batch is linked after the heads and then lost, as if its transaction failed.
	lost, err := encodeRows(chainBatch("lost", 3))
	if err != nil {
		t.Fatal(err)
	}
	fields, err := prepareChainRows(lost)
	if err != nil {
		t.Fatal(err)
	}
	lb, wait, err := s.heads.linkAhead(chainKeys(lost), lost, fields)
	if err != nil || lb == nil || wait != nil {
		t.Fatalf("linkAhead: %v, %v, %v", lb, wait, err)
	}
	close(lb.done)
	next, err := encode(chainBatch("next", 3))
	if err != nil {
		t.Fatal(err)
	}
	if fields, err = prepareChainRows(next); err != nil {
		t.Fatal(err)
	}
	stored, err := s.writeLinked(ctx, next, fields, nil)
	if err != nil || stored {
		t.Fatalf("a batch linked after a lost one: stored %v, error %v", stored, err)
	}
	if n := db.Count(t); n != 3 {
		t.Fatalf("audit_logs has %d rows, want 3", n)
	}
	if err := s.writeChainedBatch(ctx, next); err != nil {
		t.Fatal(err)
	}
	if lengths := verifyChains(t, db.Pool); lengths["t_alpha"] != 2 || lengths["t_beta"] != 2 || lengths[""] != 2 {
		t.Fatalf("chain lengths %v, want 2 each", lengths)
	}
	if err := s.Write(ctx, chainBatch("after", 3)); err != nil {
		t.Fatal(err)
	}
	if n := s.ahead.Load(); n != 1 {
		t.Fatalf("%d batches linked ahead, want 1 (the last)", n)
	}
	if lengths := verifyChains(t, db.Pool); lengths["t_alpha"] != 3 {
		t.Fatalf("chain lengths %v, want 3 each", lengths)
	}
}

// TestChainClaimedHeads: a batch that reads the heads under their locks makes the batches that
// begin meanwhile wait for the heads it publishes, and be linked after them.
func TestChainClaimedHeads(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if err := NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema}).Write(ctx, chainBatch("first", 6)); err != nil {
		t.Fatal(err)
	}
	fresh := NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema})
	rows, err := encodeRows(chainBatch("claimed", 3))
	if err != nil {
		t.Fatal(err)
	}
	published := make(chan struct{})
	fresh.heads.claim(chainKeys(rows), published)
	stored := make(chan error, 1)
	go func() {
		fields, err := prepareChainRows(rows)
		if err == nil {
			var ok bool
			if ok, err = fresh.writeLinked(ctx, rows, fields, nil); err == nil && !ok {
				err = errors.New("not linked ahead after the published heads")
			}
		}
		stored <- err
	}()
	select {
	case err := <-stored:
		t.Fatalf("a batch did not wait for claimed heads: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	var heads map[string]*chainHead
	for _, k := range chainTenants {
		seq, hash := chainHeadOf(t, db.Pool, k)
		h := &chainHead{seq: seq}
		copy(h.hash[:], hash)
		if heads == nil {
			heads = map[string]*chainHead{}
		}
		heads[k] = h
	}
	fresh.heads.publish(heads, nil) // as if read by a batch already stored
	close(published)
	if err := <-stored; err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t); n != 9 {
		t.Fatalf("audit_logs has %d rows, want 9", n)
	}
	if lengths := verifyChains(t, db.Pool); lengths["t_alpha"] != 3 || lengths["t_beta"] != 3 || lengths[""] != 3 {
		t.Fatalf("chain lengths %v, want 3 each", lengths)
	}
}

// encodedBatch returns the records of chainBatch(p, n) as the Writer hands a chained sink a
// batch it encoded: each with its row, made with room for the chain's columns, and the jsonb
// texts and chain fields made on the way.
func encodedBatch(t *testing.T, p string, n int) []*Record {
	t.Helper()
	rb := newRowBatch(NewRedactor(nil, nil), n)
	rb.chain()
	reds := make([]Record, n)
	out := make([]*Record, n)
	for i, r := range chainBatch(p, n) {
		row, err := rb.rowOf(r, &reds[i])
		if err != nil {
			t.Fatal(err)
		}
		rb.prepareChain(row, &reds[i])
		reds[i].row = row
		out[i] = &reds[i]
	}
	return out
}

// TestChainPrelinked: a batch the Writer's encoding goroutine linked after the cached heads is
// stored with those links when the heads have not moved since; when another batch moved them
// first, its links are dropped and it is linked again after that batch. The chains verify either
// way, and the links are taken by one write only.
func TestChainPrelinked(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema})
	first := encodedBatch(t, "first", 3)
	s.prelink(first)
	if first[0].link != nil {
		t.Fatal("a batch was linked before the sink knew any head")
	}
	if err := s.Write(ctx, first); err != nil {
		t.Fatal(err)
	}

	second := encodedBatch(t, "second", 3)
	s.prelink(second)
	if second[0].link == nil {
		t.Fatal("a batch was not linked ahead after known heads")
	}
	if err := s.Write(ctx, second); err != nil {
		t.Fatal(err)
	}
	if second[0].link != nil {
		t.Fatal("the links made ahead were left for another write")
	}
	if a, b := s.adopted.Load(), s.ahead.Load(); a != 1 || b != 1 {
		t.Fatalf("%d batches stored with the links made ahead, %d linked ahead; want 1 and 1", a, b)
	}

	// The third batch is linked after the second's heads, but the fourth is stored first.
	third := encodedBatch(t, "third", 3)
	s.prelink(third)
	if third[0].link == nil {
		t.Fatal("the third batch was not linked ahead")
	}
	if err := s.Write(ctx, encodedBatch(t, "fourth", 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, third); err != nil {
		t.Fatal(err)
	}
	if a, b := s.adopted.Load(), s.ahead.Load(); a != 1 || b != 3 {
		t.Fatalf("%d batches stored with the links made ahead, %d linked ahead; want 1 and 3", a, b)
	}
	if lengths := verifyChains(t, db.Pool); lengths["t_alpha"] != 4 || lengths["t_beta"] != 4 || lengths[""] != 4 {
		t.Fatalf("chain lengths %v, want 4 each", lengths)
	}
	rep, err := Verify(ctx, db.Pool, "t_alpha", VerifyOptions{Schema: db.Schema})
	if err != nil || !rep.OK {
		t.Fatalf("verify: %+v, %v", rep, err)
	}

	// Links made for other rows (the same records encoded again) are not taken.
	fifth := encodedBatch(t, "fifth", 3)
	s.prelink(fifth)
	again := encodedBatch(t, "fifth", 3)
	again[0].link, fifth[0].link = fifth[0].link, nil
	if err := s.Write(ctx, again); err != nil {
		t.Fatal(err)
	}
	if a := s.adopted.Load(); a != 1 {
		t.Fatalf("links made for other rows were taken (%d)", a)
	}
	if lengths := verifyChains(t, db.Pool); lengths["t_alpha"] != 5 {
		t.Fatalf("chain lengths %v, want 5 each", lengths)
	}
}

// TestChainPrelinkedInARow: batches the encoding goroutine links one after the other before a
// worker takes the first are each linked after the heads the one before leaves, and all are stored
// with those links; a batch dropped before it is stored costs the next ones their links only.
func TestChainPrelinkedInARow(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema})
	if err := s.Write(ctx, encodedBatch(t, "first", 3)); err != nil {
		t.Fatal(err)
	}
	batches := make([][]*Record, 4)
	for i := range batches {
		batches[i] = encodedBatch(t, fmt.Sprintf("row-%d", i), 3)
		s.prelink(batches[i])
		if batches[i][0].link == nil {
			t.Fatalf("batch %d was not linked ahead", i)
		}
	}
	for i, b := range batches {
		if err := s.Write(ctx, b); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	if a, b := s.adopted.Load(), s.ahead.Load(); a != 4 || b != 4 {
		t.Fatalf("%d batches stored with the links made ahead, %d linked ahead; want 4 and 4", a, b)
	}

	// The second of three batches linked in a row is dropped: the third, linked after it, is
	// linked again after the first, and the one after it is linked ahead once more.
	dropped := make([][]*Record, 3)
	for i := range dropped {
		dropped[i] = encodedBatch(t, fmt.Sprintf("dropped-%d", i), 3)
		s.prelink(dropped[i])
	}
	for _, i := range []int{0, 2} {
		if err := s.Write(ctx, dropped[i]); err != nil {
			t.Fatal(err)
		}
	}
	last := encodedBatch(t, "last", 3)
	s.prelink(last)
	if err := s.Write(ctx, last); err != nil {
		t.Fatal(err)
	}
	if a, b := s.adopted.Load(), s.ahead.Load(); a != 6 || b != 7 {
		t.Fatalf("%d batches stored with the links made ahead, %d linked ahead; want 6 and 7", a, b)
	}
	if lengths := verifyChains(t, db.Pool); lengths["t_alpha"] != 8 || lengths["t_beta"] != 8 || lengths[""] != 8 {
		t.Fatalf("chain lengths %v, want 8 each", lengths)
	}
	for _, k := range []string{"t_alpha", "t_beta", ""} {
		rep, err := Verify(ctx, db.Pool, k, VerifyOptions{Schema: db.Schema})
		if err != nil || !rep.OK {
			t.Fatalf("verify %q: %+v, %v", k, rep, err)
		}
	}
}

// TestWriterPrelinks: a Writer with one worker links each batch while the batch before is
// stored, and its sink stores batches with those links; every chain verifies.
func TestWriterPrelinks(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema})
	w := NewWriter(s, WriterOptions{BatchSize: 50, Workers: 1, QueueSize: 2000, FlushInterval: time.Hour})
	defer func() { _ = w.Close(ctx) }()
	// Batches are written until one is stored with its links made ahead, which a batch encoded
	// while the one before it was stored is, unless a goroutine waited long for a core.
	n := 0
	for round := 0; round < 20 && s.adopted.Load() == 0; round++ {
		for range 500 {
			if err := w.Enqueue(chainRecord("w", n)); err != nil {
				t.Fatal(err)
			}
			n++
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s.adopted.Load() == 0 {
		t.Fatalf("none of %d batches was stored with links made ahead", n/50)
	}
	if got := db.Count(t); got != n {
		t.Fatalf("audit_logs has %d rows, want %d", got, n)
	}
	for _, k := range chainTenants {
		rep, err := Verify(ctx, db.Pool, k, VerifyOptions{Schema: db.Schema})
		if err != nil || !rep.OK {
			t.Fatalf("verify %q: %+v, %v", k, rep, err)
		}
	}
	t.Logf("%d of %d batches stored with links made ahead", s.adopted.Load(), n/50)
}

// TestWriterPrelinksManyWorkers: with four workers and batches that span several tenants, the
// batches the encoding goroutine linked and those the workers linked meet on the same chains;
// every record is stored once and every chain verifies.
func TestWriterPrelinksManyWorkers(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema})
	w := NewWriter(s, WriterOptions{BatchSize: 7, Workers: 4, QueueSize: 5000, FlushInterval: time.Millisecond})
	tenants := []string{"t1", "t2", "t3", "t4", ""}
	const n = 3000
	for i := range n {
		r := chainRecord("m", i)
		r.Tenant.ID = tenants[(i*7/3)%len(tenants)]
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := db.Count(t); got != n {
		t.Fatalf("audit_logs has %d rows, want %d", got, n)
	}
	for _, k := range tenants {
		rep, err := Verify(ctx, db.Pool, k, VerifyOptions{Schema: db.Schema})
		if err != nil || !rep.OK {
			t.Fatalf("verify %q: %+v, %v", k, rep, err)
		}
	}
	t.Logf("%d batches linked ahead, %d with the encoding goroutine's links", s.ahead.Load(), s.adopted.Load())
}
