package core

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// chainHead is the last link of one tenant's chain while a batch is appended to it.
type chainHead struct {
	seq  int64
	hash [32]byte
}

// chainSQL holds the statements that read and move the heads of the chains in one schema.
type chainSQL struct {
	// lock creates the missing heads of $1 (tenant keys in byte order) and locks all of them in
	// that order, returning each head: one statement, so that two writers appending to the same
	// tenants take the locks in the same order and cannot deadlock. ON CONFLICT DO UPDATE locks
	// an existing head as FOR UPDATE would and returns its latest committed state.
	lock string
	// advance moves the heads to the last links of the batch, given as arrays.
	advance string
	// stored selects the ids of $1 already in audit_logs.
	stored string
}

func newChainSQL(schema string) chainSQL {
	heads := pgx.Identifier{schema, "audit_chain_heads"}.Sanitize()
	logs := pgx.Identifier{schema, "audit_logs"}.Sanitize()
	return chainSQL{
		lock: `INSERT INTO ` + heads + ` AS h (tenant_key, seq, row_hash) ` +
			`SELECT u.k, 0, '\x` + hex.EncodeToString(zeroHash[:]) + `'::bytea ` +
			`FROM unnest($1::text[]) WITH ORDINALITY AS u(k, o) ORDER BY u.o ` +
			`ON CONFLICT (tenant_key) DO UPDATE SET updated_at = h.updated_at ` +
			`RETURNING h.tenant_key, h.seq, h.row_hash`,
		advance: `UPDATE ` + heads + ` AS h SET seq = u.seq, row_hash = u.hash, updated_at = now() ` +
			`FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS u(k, seq, hash) WHERE h.tenant_key = u.k`,
		stored: `SELECT id::text FROM ` + logs + ` WHERE id = ANY($1::uuid[])`,
	}
}

// tenantKeyOf returns the chain a row belongs to: its tenant id, or "" without one.
func tenantKeyOf(row []any) string {
	if s, ok := row[5].(string); ok {
		return s
	}
	return ""
}

// chainKeys returns the distinct tenant keys of rows in byte order, the order heads are locked in.
func chainKeys(rows [][]any) []string {
	keys := make([]string, 0, 4)
	for _, row := range rows {
		k := tenantKeyOf(row)
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// chainer assigns the links of a batch, in batch order, after the heads it was given.
type chainer struct {
	heads map[string]*chainHead
	// links holds prev_hash and row_hash of each chained row, 64 bytes a row.
	links []byte
	// vals holds the values of the linked rows still to be made, for rows with no room for
	// their links (expect: the rows the first such row makes room for); seqs and hashes box
	// their links (see rowbox.go).
	vals   []any
	expect int
	seqs   boxArena[int64]
	hashes boxArena[[]byte]
}

func newChainer(n int) *chainer {
	return &chainer{
		heads:  make(map[string]*chainHead, 4),
		links:  make([]byte, 0, 64*n),
		expect: n,
		seqs:   newBoxArena[int64](n),
		hashes: newBoxArena[[]byte](2 * n),
	}
}

// setHead records a head read from audit_chain_heads.
func (c *chainer) setHead(key string, seq int64, hash []byte) error {
	if len(hash) != 32 {
		return fmt.Errorf("auditkit: the chain head of tenant key %q holds a %d-byte hash", key, len(hash))
	}
	h := &chainHead{seq: seq}
	copy(h.hash[:], hash)
	c.heads[key] = h
	return nil
}

// prepareChain returns the canonical fields of row that do not depend on its place in the chain
// (all but seq and prev_hash), so that the work is done before the heads are locked. The row's
// version becomes RecordVersion.
func prepareChain(row []any) (ChainFields, error) {
	return prepareChainWith(row, nil)
}

// prepareChainWith is prepareChain for a row whose documents' jsonb texts canon may hold (see
// chainFieldsWith).
func prepareChainWith(row []any, canon *rowCanon) (ChainFields, error) {
	row[colVersion] = int16(RecordVersion)
	return chainFieldsWith(row, canon, tenantKeyOf(row), 0, zeroHash)
}

// link chains row, whose fields prepareChain returned: it returns the row's values followed by
// seq, prev_hash and row_hash, and moves its tenant's head. A row with room for those three
// after its values (the rows of a chained rowBatch: see rowBatch.chain) gets them there, in
// place of the ones an earlier link of the same row wrote; any other row is copied. Spare
// capacity of row must therefore be the row's own.
func (c *chainer) link(row []any, f *ChainFields) ([]any, error) {
	key := tenantKeyOf(row)
	h := c.heads[key]
	if h == nil {
		return nil, fmt.Errorf("auditkit: no chain head was locked for tenant key %q", key)
	}
	seq := h.seq + 1
	at := len(c.links)
	c.links = append(c.links, h.hash[:]...)
	prev := c.links[at : at+32 : at+32]
	f[1] = strconv.AppendInt(f[1][:0], seq, 10)
	f[2] = prev
	sum := ChainHash(f)
	c.links = append(c.links, sum[:]...)
	h.seq, h.hash = seq, sum
	n := len(row) + len(ChainColumns)
	if cap(row) >= n {
		out := append(row, c.seqs.box(seq), c.hashes.box(prev), c.hashes.box(c.links[at+32:at+64:at+64]))
		return out[:n:n], nil
	}
	if cap(c.vals)-len(c.vals) < n {
		c.vals = make([]any, 0, max(c.expect, 1)*n)
		c.expect = 1
	}
	start := len(c.vals)
	c.vals = append(c.vals, row...)
	c.vals = append(c.vals, c.seqs.box(seq), c.hashes.box(prev), c.hashes.box(c.links[at+32:at+64:at+64]))
	return c.vals[start:len(c.vals):len(c.vals)], nil
}

// linkAll links rows, in order, with their fields (see link); a row that cannot be linked is
// rejected with its index.
func (c *chainer) linkAll(rows [][]any, fields []*ChainFields) ([][]any, error) {
	out := make([][]any, len(rows))
	for i, row := range rows {
		var err error
		if out[i], err = c.link(row, fields[i]); err != nil {
			return nil, &RejectedError{Index: i, Err: err}
		}
	}
	return out, nil
}

// advanceArgs returns the arguments of chainSQL.advance: the heads as three arrays.
func (c *chainer) advanceArgs() (keys []string, seqs []int64, hashes [][]byte) {
	for k, h := range c.heads {
		keys = append(keys, k)
		seqs = append(seqs, h.seq)
		hashes = append(hashes, h.hash[:])
	}
	return keys, seqs, hashes
}

// truncateMicro drops the part of t below a microsecond, towards the past, as pgx does when it
// encodes a timestamptz: the instant a row stores and its hash covers.
func truncateMicro(t time.Time) time.Time {
	return t.Truncate(time.Microsecond) // since the zero time, a whole second: towards the past
}

// writeChained stores rows in one transaction that locks the heads of their tenants, chains the
// rows in batch order after them, copies the rows with their links and moves the heads. With
// skipStored, ids already in audit_logs (an earlier attempt of the batch committed) and repeated
// ids of the batch are left out before anything is chained, so that no record is chained twice.
//
// fields, when not nil, are the fields prepareChainRows returned for rows (without personal-value
// encryption only). The heads stay locked until the commit, so the transaction takes as few
// round trips as it can: BEGIN travels with the lock (and the look-up of stored ids), and the
// heads' update with COMMIT. Once the batch is linked, its heads become the sink's cached heads
// (writeLinked).
func (s *PostgresSink) writeChained(ctx context.Context, rows [][]any, fields []*ChainFields, skipStored bool) (err error) {
	if s.pii == nil && fields == nil {
		if fields, err = prepareChainRows(rows); err != nil {
			return err
		}
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// Claimed with the connection in hand: a batch waiting for this one's heads holds a
	// connection of its own, and this one needs no other.
	claimed, published := chainKeys(rows), make(chan struct{})
	s.heads.claim(claimed, published)
	defer func() {
		select {
		case <-published:
		default:
			s.heads.unclaim(claimed, published)
			close(published)
		}
	}()
	began := false
	defer func() {
		if err != nil && began {
			// Ends the transaction whatever state it is in; a connection that cannot is dropped.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if _, rerr := conn.Exec(rctx, "ROLLBACK"); rerr != nil {
				_ = conn.Conn().Close(rctx)
			}
			cancel()
		}
		conn.Release()
	}()

	if s.pii != nil {
		// Personal values are encrypted before the chain fields are built, so that the chain
		// hashes the ciphertext; the subject keys are read or created in this transaction,
		// which BEGIN opens with the first key statement (none without personal values).
		query := func(ctx context.Context, q, arg string) (Rows, error) {
			if began {
				return pgxQuery(conn)(ctx, q, arg)
			}
			b := &pgx.Batch{}
			b.Queue("BEGIN")
			b.Queue(q, arg)
			began = true
			br := conn.SendBatch(ctx, b)
			if _, err := br.Exec(); err != nil {
				_ = br.Close()
				return nil, err
			}
			rows, _ := br.Query()
			return batchRows{rows, br}, nil
		}
		if rows, err = s.pii.encryptRows(ctx, query, s.piiSQL, rows); err != nil {
			return err
		}
		if fields, err = prepareChainRows(rows); err != nil {
			return err
		}
	}

	var ids []string
	b := &pgx.Batch{}
	opened := began
	if !opened {
		b.Queue("BEGIN")
	}
	b.Queue(s.chain.lock, chainKeys(rows))
	if skipStored {
		ids = make([]string, len(rows))
		for i, row := range rows {
			ids[i] = row[0].(uuid.UUID).String()
		}
		b.Queue(s.chain.stored, ids)
	}
	began = true
	br := conn.SendBatch(ctx, b)
	c := newChainer(len(rows))
	seen := make(map[string]bool)
	err = func() error {
		if !opened {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		var (
			key  string
			seq  int64
			hash []byte
		)
		hrows, _ := br.Query()
		if _, err := pgx.ForEachRow(hrows, []any{&key, &seq, &hash}, func() error { return c.setHead(key, seq, hash) }); err != nil {
			return err
		}
		if skipStored {
			var id string
			idRows, _ := br.Query()
			if _, err := pgx.ForEachRow(idRows, []any{&id}, func() error { seen[id] = true; return nil }); err != nil {
				return err
			}
		}
		return br.Close()
	}()
	if err != nil {
		_ = br.Close()
		return err
	}

	index := make([]int, 0, len(rows)) // position in the batch of each row copied
	for i := range rows {
		if skipStored {
			if seen[ids[i]] {
				continue
			}
			seen[ids[i]] = true
		}
		index = append(index, i)
	}
	out := make([][]any, len(index))
	for j, i := range index {
		if out[j], err = c.link(rows[i], fields[i]); err != nil {
			return &RejectedError{Index: i, Err: err}
		}
	}
	// The heads this batch leaves are known now: the sink's next batches are linked after them
	// while this one is copied.
	done := make(chan struct{})
	s.heads.publish(c.heads, done)
	close(published)
	defer func() {
		if err != nil {
			s.heads.forget(slices.Collect(maps.Keys(c.heads)))
		}
		close(done)
	}()
	if len(out) > 0 {
		if _, err := copyRows(ctx, s.bin, conn, s.table, s.chainCols, out); err != nil {
			if rej, ok := classify(err).(*RejectedError); ok && rej.Index >= 0 && rej.Index < len(index) {
				rej.Index = index[rej.Index]
				return rej
			}
			return err
		}
	}
	keys, seqs, hashes := c.advanceArgs()
	b = &pgx.Batch{}
	b.Queue(s.chain.advance, keys, seqs, hashes)
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	began = false
	return nil
}

// prepareChainRows returns the fields prepareChain builds for each row; a row whose fields cannot
// be built is rejected with its index.
func prepareChainRows(rows [][]any) ([]*ChainFields, error) {
	return prepareChainRecs(rows, nil)
}

// prepareChainRecs is prepareChainRows for the rows of recs (recs[i] carries rows[i], or recs is
// nil): the jsonb texts a record carries for its row's documents are used rather than parsed, and
// the fields the Writer made for the row ahead (rowBatch.prepareChain) are taken as they are.
func prepareChainRecs(rows [][]any, recs []*Record) ([]*ChainFields, error) {
	fields := make([]*ChainFields, len(rows))
	var (
		made []ChainFields // the fields made here
		buf  []byte        // their bytes, rows after rows
		bufs = byteChunks{size: chainFieldsChunk}
	)
	for i, row := range rows {
		var canon *rowCanon
		if recs != nil {
			canon = recs[i].canon
		}
		if canon != nil && canon.fields != nil && len(row) > 0 && canon.rowAt == &row[0] {
			fields[i] = canon.fields // made while the batch before was stored
			continue
		}
		if len(made) == 0 {
			made = make([]ChainFields, len(rows)-i)
		}
		f := &made[0]
		made = made[1:]
		row[colVersion] = int16(RecordVersion)
		var err error
		if buf, err = chainFieldsInto(f, buf, &bufs, row, canon, tenantKeyOf(row), 0, zeroHash); err != nil {
			return nil, &RejectedError{Index: i, Err: err}
		}
		fields[i] = f
	}
	return fields, nil
}

// chainFieldsChunk is the size of the buffers the chain fields of a batch's rows share.
const chainFieldsChunk = 32 << 10

// batchRows is the rows of a batch's last statement; closing them closes the batch.
type batchRows struct {
	pgx.Rows
	br pgx.BatchResults
}

func (r batchRows) Close() error { r.Rows.Close(); return r.br.Close() }

// appendChainJSON appends the chain columns of a TxWriter row to the row's JSON object (buf ends
// with its closing brace).
func appendChainJSON(buf []byte, seq int64, prev, hash []byte) []byte {
	buf = buf[:len(buf)-1]
	buf = append(buf, `,"seq":`...)
	buf = strconv.AppendInt(buf, seq, 10)
	buf = append(buf, `,"prev_hash":"\\x`...)
	buf = hex.AppendEncode(buf, prev)
	buf = append(buf, `","row_hash":"\\x`...)
	buf = hex.AppendEncode(buf, hash)
	return append(buf, `"}`...)
}

// chainCache holds, for each chain this sink appends to, the head its last linked batch moved
// the chain to: committed, or expected to commit. A batch whose chains all have a cached head is
// linked after them before its transaction starts (writeLinked), so that two batches of the same
// tenant copy their rows at the same time and only the heads' update waits for the batch before;
// the database's heads stay the authority, checked under their locks before the commit.
type chainCache struct {
	mu    sync.Mutex
	heads map[string]cachedHead
	// guessed holds, for each chain, the heads the batches speculate linked move it through, in
	// order, from the head the first of them was linked after: while the cache holds one of them,
	// the batches after it are not stored yet, and the next batch is linked after the last.
	guessed map[string][]chainHead
}

// cachedHead is what chainCache knows of one chain: the head the batches linked so far move it
// to, and the last of those batches.
type cachedHead struct {
	head chainHead
	// known is false while the head is being read under the heads' locks by a batch that will
	// publish it (writeChained): done is then closed when it is published, or not to be.
	known bool
	// done is closed when the batch that moves the chain to head ends, stored or not; nil for a
	// batch already stored.
	done chan struct{}
}

// maxGuessed bounds chainCache.guessed for one chain: batches linked further ahead of the stored
// ones are linked after the cached head.
const maxGuessed = 16

// linkedBatch is a batch linkAhead linked.
type linkedBatch struct {
	keys []string
	rows [][]any               // the rows with their links
	prev map[string]chainHead  // the heads it was linked after: the database must hold them
	next map[string]*chainHead // the heads it moves them to
	wait []chan struct{}       // closed when the batches linked before it on its chains end
	done chan struct{}         // closed when it ends
}

// linkAhead links rows after the cached heads of their chains and moves those heads past them.
// It returns nil, without linking anything, when a chain of the batch has no cached head, or,
// with a channel to wait for before asking again, when a head is about to be published. The
// caller must close the batch's done once it is stored or not.
func (cc *chainCache) linkAhead(keys []string, rows [][]any, fields []*ChainFields) (*linkedBatch, chan struct{}, error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	c := newChainer(len(rows))
	lb := &linkedBatch{keys: keys, prev: make(map[string]chainHead, len(keys)), done: make(chan struct{})}
	for _, k := range keys {
		h, found := cc.heads[k]
		if !found {
			return nil, nil, nil
		}
		if !h.known {
			return nil, h.done, nil
		}
		lb.prev[k] = h.head
		c.heads[k] = &chainHead{seq: h.head.seq, hash: h.head.hash}
		if h.done != nil && !slices.Contains(lb.wait, h.done) {
			lb.wait = append(lb.wait, h.done)
		}
	}
	var err error
	if lb.rows, err = c.linkAll(rows, fields); err != nil {
		return nil, nil, err
	}
	for k, h := range c.heads {
		cc.heads[k] = cachedHead{head: *h, known: true, done: lb.done}
	}
	lb.next = c.heads
	return lb, nil, nil
}

// prelinked is a batch the Writer's encoding goroutine linked after the heads its chains had in
// the sink's cache at the time (PostgresSink.prelink), while a worker stored the batch before.
type prelinked struct {
	keys []string
	rows [][]any               // the rows with their links, in place in the rows given
	prev map[string]chainHead  // the heads it was linked after
	next map[string]*chainHead // the heads it moves them to
}

// prelink links the batch recs, which the Writer encoded and is about to hand to the sink, after
// the heads the cache holds for its chains now, and keeps the result on its first record: the
// rows are hashed while a worker stores the batch before, not by the worker that stores them.
// The links are only a guess. writeLinked takes them (adopt) only when the cache still holds
// those heads. Otherwise it links the batch itself, as it does when nothing is kept. A batch
// whose chains have no known head in the cache is not linked here.
func (s *PostgresSink) prelink(recs []*Record) {
	if len(recs) == 0 {
		return
	}
	rows := make([][]any, len(recs))
	for i, r := range recs {
		if r.row == nil {
			return
		}
		rows[i] = r.row
	}
	fields, err := prepareChainRecs(rows, recs)
	if err != nil {
		return
	}
	recs[0].link = s.heads.speculate(chainKeys(rows), rows, fields)
}

// speculate links rows after the heads their chains will have when the batch is stored, without
// moving the cached heads. Each batch is linked after the ones speculate linked before it and that
// are not stored yet: the encoding goroutine links a batch while the one before it waits for a
// worker, and the links of a batch are the same whoever links it after the same heads. It
// returns nil when a chain of the batch has no known head.
func (cc *chainCache) speculate(keys []string, rows [][]any, fields []*ChainFields) *prelinked {
	prev := make(map[string]chainHead, len(keys))
	cc.mu.Lock()
	for _, k := range keys {
		h, found := cc.heads[k]
		if !found || !h.known {
			cc.mu.Unlock()
			return nil
		}
		prev[k] = h.head
		g := cc.guessed[k]
		if i := slices.Index(g, h.head); i >= 0 && len(g)-i < maxGuessed {
			prev[k] = g[len(g)-1]
			g = g[:copy(g, g[i:])] // the batches before i are stored
		} else {
			g = append(g[:0], h.head)
		}
		if cc.guessed == nil {
			cc.guessed = make(map[string][]chainHead, len(keys))
		}
		cc.guessed[k] = g
	}
	cc.mu.Unlock()
	c := newChainer(len(rows))
	for k, h := range prev {
		c.heads[k] = &chainHead{seq: h.seq, hash: h.hash}
	}
	out, err := c.linkAll(rows, fields)
	if err != nil {
		return nil
	}
	cc.mu.Lock()
	for k, h := range c.heads {
		if g := cc.guessed[k]; len(g) > 0 && g[len(g)-1] == prev[k] {
			cc.guessed[k] = append(g, *h)
		}
	}
	cc.mu.Unlock()
	return &prelinked{keys: keys, rows: out, prev: prev, next: c.heads}
}

// adopt is linkAhead for a batch the encoding goroutine linked (pl, nil when it did not): when
// pl holds these rows, linked in place, and the cache still holds the heads pl was linked after,
// it moves them past the batch as linkAhead does and returns the batch. Otherwise it returns
// nil and changes nothing.
func (cc *chainCache) adopt(keys []string, rows [][]any, pl *prelinked) *linkedBatch {
	if pl == nil || len(pl.rows) != len(rows) || !slices.Equal(pl.keys, keys) {
		return nil
	}
	for i, row := range rows {
		if len(row) == 0 || len(pl.rows[i]) == 0 || &pl.rows[i][0] != &row[0] {
			return nil
		}
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	lb := &linkedBatch{keys: keys, rows: pl.rows, prev: pl.prev, next: pl.next, done: make(chan struct{})}
	for _, k := range keys {
		h, found := cc.heads[k]
		if !found || !h.known || h.head != pl.prev[k] {
			return nil
		}
		if h.done != nil && !slices.Contains(lb.wait, h.done) {
			lb.wait = append(lb.wait, h.done)
		}
	}
	for k, h := range pl.next {
		cc.heads[k] = cachedHead{head: *h, known: true, done: lb.done}
	}
	return lb
}

// forget drops the heads of keys, so that the next batches of those chains read their heads from
// the database under its locks.
func (cc *chainCache) forget(keys []string) {
	cc.mu.Lock()
	for _, k := range keys {
		delete(cc.heads, k)
		delete(cc.guessed, k)
	}
	cc.mu.Unlock()
}

// publish records heads a batch moves its chains to, linked under the heads' locks: the next
// batches of those chains are linked after them, and wait for done before they take the locks.
func (cc *chainCache) publish(heads map[string]*chainHead, done chan struct{}) {
	cc.mu.Lock()
	if cc.heads == nil {
		cc.heads = make(map[string]cachedHead, len(heads))
	}
	for k, h := range heads {
		cc.heads[k] = cachedHead{head: *h, known: true, done: done}
	}
	cc.mu.Unlock()
}

// claim marks the chains of keys as about to have a head published by a batch that reads them
// under their locks (writeChained): a later batch of one of them waits for published to be
// closed, then is linked after that head, rather than be linked after a head the batch will move
// (and fail its check) or read the heads under their locks too (and publish a head of its own
// that the other's next batch is not linked after).
func (cc *chainCache) claim(keys []string, published chan struct{}) {
	cc.mu.Lock()
	if cc.heads == nil {
		cc.heads = make(map[string]cachedHead, len(keys))
	}
	for _, k := range keys {
		cc.heads[k] = cachedHead{done: published}
	}
	cc.mu.Unlock()
}

// unclaim drops the marks claim left with published.
func (cc *chainCache) unclaim(keys []string, published chan struct{}) {
	cc.mu.Lock()
	for _, k := range keys {
		if h, found := cc.heads[k]; found && !h.known && h.done == published {
			delete(cc.heads, k)
		}
	}
	cc.mu.Unlock()
}

// writeLinked stores rows linked after the cached heads of their chains. It copies them in a
// transaction, waits for the batches linked before it on the same chains to end, then locks the
// heads (in the order writeChained does) and commits only when each head is the one the batch was
// linked after, moving it to the batch's last link. It returns stored false and no error, having
// stored nothing, when a chain has no cached head or a head is not the one expected (a batch
// linked before it was not stored, or another process appended to the chain): the caller then
// writes the batch with writeChained. On every failure the batch's chains leave the cache.
//
// The connection is acquired before the batch is linked, so that a batch waiting for the one
// linked before it never holds a connection that one still needs.
func (s *PostgresSink) writeLinked(ctx context.Context, rows [][]any, fields []*ChainFields, pl *prelinked) (stored bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	began := false
	defer func() {
		if began {
			// Ends the transaction whatever state it is in; a connection that cannot is dropped.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if _, rerr := conn.Exec(rctx, "ROLLBACK"); rerr != nil {
				_ = conn.Conn().Close(rctx)
			}
			cancel()
		}
		conn.Release()
	}()
	keys := chainKeys(rows)
	var wait chan struct{}
	lb := s.heads.adopt(keys, rows, pl)
	adopted := lb != nil
	if !adopted {
		lb, wait, err = s.heads.linkAhead(keys, rows, fields)
	}
	for wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		lb, wait, err = s.heads.linkAhead(keys, rows, fields)
	}
	if err != nil || lb == nil {
		return false, err
	}
	defer func() {
		if !stored {
			s.heads.forget(lb.keys)
		}
		close(lb.done)
	}()
	began = true // a ROLLBACK outside a transaction only warns
	if _, err := beginCopyRows(ctx, s.bin, conn, s.table, s.chainCols, lb.rows); err != nil {
		return false, err
	}
	for _, done := range lb.wait {
		select {
		case <-done:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	var (
		key  string
		seq  int64
		hash []byte
	)
	moved := false
	hrows, _ := conn.Query(ctx, s.chain.lock, lb.keys)
	if _, err := pgx.ForEachRow(hrows, []any{&key, &seq, &hash}, func() error {
		if h, found := lb.prev[key]; !found || h.seq != seq || !bytes.Equal(h.hash[:], hash) {
			moved = true
		}
		return nil
	}); err != nil {
		return false, err
	}
	if moved {
		return false, nil // rolled back by the deferred function
	}
	seqs, hashes := make([]int64, len(lb.keys)), make([][]byte, len(lb.keys))
	for i, k := range lb.keys {
		seqs[i], hashes[i] = lb.next[k].seq, lb.next[k].hash[:]
	}
	b := &pgx.Batch{}
	b.Queue(s.chain.advance, lb.keys, seqs, hashes)
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return false, err
	}
	began = false
	s.ahead.Add(1)
	if adopted {
		s.adopted.Add(1)
	}
	return true, nil
}
