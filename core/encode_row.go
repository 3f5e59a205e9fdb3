package core

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/uuid"
)

// rowDocs are the JSON documents of one row, encoded; nil stores NULL.
type rowDocs struct {
	before, after, diff, query, meta []byte
}

// rowBatch turns the records of one batch into their audit_logs rows, redacting while it
// encodes (see encode.go). The rows share one slice of values and a few large buffers for their
// JSON documents, and a text value equal to the one in the row before is not boxed again: a batch
// of ORM records repeats its tenant, actor, kind and resource type. The values that are new in a
// row (its id, its time, its resource id, its JSON documents) are boxed into slots of per-batch
// arenas (see rowbox.go), so that a row costs no allocation of its own beyond its share of those.
//
// Once the sink has stored the rows and nothing holds them any more, the Writer hands a rowBatch
// to the next batch (recycle), which then makes its rows in the same memory instead of new memory.
type rowBatch struct {
	red  *Redactor
	vals []any // the values of the rows still to be made
	n    int   // the rows vals is first made for
	// stride is the room each row takes in vals: its values, and with chain the chain's
	// columns after them, which the chainer writes in place (see chainer.link).
	stride int
	buf    []byte // the JSON documents of the rows made, and room for more
	chunk  int    // the size of a new buf
	box    *rowBoxes
	enc    redactEncoder

	// With canon set (the rows go to a hash chain, see canon.go), the jsonb texts of the rows'
	// documents are written into cbuf while the documents are encoded, and each redacted record
	// carries them in one of canons.
	canon  bool
	cbuf   []byte
	canons []rowCanon
	// fields and fbuf hold the chain fields prepareChain makes of the rows, and their bytes.
	fields []ChainFields
	fbuf   []byte

	// The memory the rows are made in, kept for the batches that reuse the rowBatch: the first
	// slices of values, canons, fields and records a batch takes (see block), and the buffers
	// buf, cbuf and fbuf are taken from.
	mem                    rowMem
	bufs, cbufs, fbufs     byteChunks
	valsTaken, canonsTaken bool
	fieldsTaken, recsTaken bool
}

// rowMem is the memory of a rowBatch's slices that a batch reusing it takes again.
type rowMem struct {
	vals   []any
	canons []rowCanon
	fields []ChainFields
	recs   []Record
	ptrs   []*Record
}

// block returns n zero values for a batch: the first time in the batch (taken unset) those of
// mem, made or grown to n and kept for the batches that reuse the memory; after that new ones.
func block[T any](mem *[]T, taken *bool, n int) []T {
	if *taken {
		return make([]T, n)
	}
	*taken = true
	if cap(*mem) < n {
		*mem = make([]T, n)
	}
	return (*mem)[:n]
}

// byteChunks hands out the buffers a batch appends its rows' bytes to, each of at least size
// bytes, and hands them out again after reset. A nil *byteChunks makes a new buffer each time.
type byteChunks struct {
	size int
	kept [][]byte
	used int // how many of kept have been taken since reset
}

// next returns an empty buffer with room for n bytes or more.
func (c *byteChunks) next(n int) []byte {
	if c == nil {
		return make([]byte, 0, n)
	}
	for c.used < len(c.kept) {
		b := c.kept[c.used]
		c.used++
		if cap(b) >= n {
			return b[:0]
		}
	}
	b := make([]byte, 0, max(n, c.size))
	if cap(b) <= c.size { // a buffer made larger for one value is not kept
		c.kept = append(c.kept, b)
		c.used = len(c.kept)
	}
	return b
}

// reset hands out the kept buffers again. Call it only when no byte of them is read any more.
func (c *byteChunks) reset() { c.used = 0 }

// grow makes the buffers handed out from now on size bytes or more, dropping those kept that are
// smaller. Call it after reset.
func (c *byteChunks) grow(size int) {
	c.size = size
	c.kept = slices.DeleteFunc(c.kept, func(b []byte) bool { return cap(b) < size })
}

// rowBufChunk is the size of the buffers the JSON documents of a batch are written into.
const rowBufChunk = 64 << 10

// newRowBatch returns a rowBatch for n records.
func newRowBatch(red *Redactor, n int) *rowBatch {
	b := &rowBatch{red: red.rules(), n: n, stride: len(Columns), chunk: min(rowBufChunk, 2048*n)}
	b.bufs.size, b.cbufs.size, b.fbufs.size = b.chunk, b.chunk, chainFieldsChunk
	if n > 1 {
		b.box = newRowBoxes(n)
	}
	return b
}

// newRowBoxes returns the rowBoxes of a batch of n rows.
func newRowBoxes(n int) *rowBoxes {
	return &rowBoxes{
		last:    make([]any, len(Columns)),
		ids:     newBoxArena[uuid.UUID](n),
		times:   newBoxArena[time.Time](n),
		strs:    newBoxArena[string](n),
		docs:    newBoxArena[[]byte](3 * n),
		ints:    newBoxArena[int64](n),
		int32s:  newBoxArena[int32](n),
		address: newBoxArena[netip.Prefix](n),
	}
}

// resize readies b, released, for a batch of n records: the arenas and buffers newRowBatch(red,
// n) would give it, where those b has are made for fewer records (a batch the flush interval cut
// short is reused for a full one).
func (b *rowBatch) resize(n int) {
	b.n = n
	if c := min(rowBufChunk, 2048*n); c > b.chunk {
		b.chunk = c
		b.bufs.grow(c)
		b.cbufs.grow(c)
	}
	if n > 1 && b.box == nil {
		b.box = newRowBoxes(n)
	}
}

// release zeroes every value the rows of b's last batch held and hands their memory out again,
// so that b then makes the rows a new rowBatch would, in the same memory. Call it only when
// nothing holds those rows or the records made with them any more (the sink has stored them and
// returned; see Writer.recycle), and resize b before the next batch.
func (b *rowBatch) release() {
	m := &b.mem
	clear(m.vals[:cap(m.vals)])
	clear(m.canons[:cap(m.canons)])
	clear(m.fields[:cap(m.fields)])
	clear(m.recs[:cap(m.recs)])
	clear(m.ptrs[:cap(m.ptrs)])
	b.vals, b.canons, b.fields, b.n = nil, nil, nil, 0
	b.valsTaken, b.canonsTaken, b.fieldsTaken, b.recsTaken = false, false, false, false
	b.buf, b.cbuf, b.fbuf = nil, nil, nil
	b.bufs.reset()
	b.cbufs.reset()
	b.fbufs.reset()
	if b.box != nil {
		b.box.reset()
	}
	b.enc.forgetValues() // the strings of the records stored
}

// records returns n zero records, for the redacted records of the batch.
func (b *rowBatch) records(n int) []Record {
	return block(&b.mem.recs, &b.recsTaken, n)
}

// pointers returns n nil pointers, for the records the batch hands to its sink.
func (b *rowBatch) pointers(n int) []*Record {
	if cap(b.mem.ptrs) < n {
		b.mem.ptrs = make([]*Record, n)
	}
	return b.mem.ptrs[:n]
}

// chain makes the batch's rows go to a hash chain: the jsonb texts of their documents are
// written while they are encoded (see canon.go), and each row has room after its values for
// the chain's columns. Call it before the first row is made.
func (b *rowBatch) chain() {
	b.canon = true
	b.stride = len(Columns) + len(ChainColumns)
}

// row returns the audit_logs row of rec redacted by the batch's Redactor: the values
// rowValues(red.Record(rec)) gives, the same JSON bytes included, except that the rows of a
// chained batch (see chain) hold each document in jsonb's text form when it was made: the same
// jsonb once stored. rec is not modified.
func (b *rowBatch) row(rec *Record) ([]any, error) {
	var red Record
	return b.rowOf(rec, &red)
}

// rowOf is row that also stores in red the record Redactor.Record would make of rec, less its
// maps of values (Before, After, Diff and Metadata are nil: the row holds them). With b.canon, red
// also carries the jsonb texts of the row's documents.
func (b *rowBatch) rowOf(rec, red *Record) ([]any, error) {
	*red = b.red.recordFields(rec)
	if len(b.vals) < b.stride {
		b.vals = block(&b.mem.vals, &b.valsTaken, max(b.n, 1)*b.stride)
		b.n = 1
	}
	var d rowDocs
	if cap(b.buf)-len(b.buf) < b.chunk/8 {
		b.buf = b.bufs.next(b.chunk)
	}
	bufStart := len(b.buf)
	// Each document is capped at its end, so that appending to one cannot reach the next.
	e := &b.enc
	e.r, e.buf = b.red, b.buf
	var texts [4][]byte
	if b.canon {
		if cap(b.cbuf)-len(b.cbuf) < b.chunk/8 {
			b.cbuf = b.cbufs.next(b.chunk)
		}
		e.canon, e.cbuf = true, b.cbuf
	}
	textsStart := len(b.cbuf)
	d.before, d.after, texts[0], texts[1] = e.writeImages(rec.Before, rec.After)
	if rec.Diff != nil {
		start, cstart := len(e.buf), e.docStart()
		e.diff(rec.Diff)
		d.diff = e.buf[start:len(e.buf):len(e.buf)]
		texts[2] = e.docEnd(cstart)
	}
	if len(rec.Metadata) != 0 {
		start, cstart := len(e.buf), e.docStart()
		e.mapAny(rec.Metadata, 0)
		d.meta = e.buf[start:len(e.buf):len(e.buf)]
		texts[3] = e.docEnd(cstart)
	}
	b.buf, e.buf = e.buf, nil
	red.canon = nil
	if b.canon {
		b.cbuf, e.cbuf, e.canon = e.cbuf, nil, false
		// A document whose jsonb text was made is stored as that text: PostgreSQL parses it
		// into the same jsonb, and the JSON bytes, written only to make it, are not kept.
		kept := false
		for k, doc := range [4]*[]byte{&d.before, &d.after, &d.diff, &d.meta} {
			switch {
			case *doc == nil:
			case texts[k] == nil:
				kept = true
			default:
				*doc = texts[k]
			}
		}
		if !kept {
			b.buf = b.buf[:bufStart]
		}
		if len(b.canons) == 0 {
			b.canons = block(&b.mem.canons, &b.canonsTaken, max(len(b.vals)/b.stride, 1))
		}
		c := &b.canons[0]
		b.canons = b.canons[1:]
		// The texts lie one after the other from textsStart (a text given up leaves nothing),
		// in cbuf as it ends: were it grown, its bytes were copied to the same offsets.
		newRowCanon(c, b.cbuf[textsStart:len(b.cbuf):len(b.cbuf)], &[4][]byte{d.before, d.after, d.diff, d.meta}, &texts)
		red.canon = c
	}
	if err := red.encodeQuery(&d); err != nil {
		return nil, err
	}
	dst := b.vals[:len(Columns):b.stride]
	b.vals = b.vals[b.stride:]
	return fillRow(dst, red, &d, b.box), nil
}

// prepareChain makes the chain fields of row, which rowOf made with red for a hash chain (see
// chain), and keeps them with the row's jsonb texts, so that the sink links the row without
// making them (see prepareChainRecs). It sets the row's version, as prepareChain does. A row whose
// fields cannot be made is left without: the sink makes them, and rejects the row.
func (b *rowBatch) prepareChain(row []any, red *Record) {
	c := red.canon
	if c == nil || len(row) != len(Columns) {
		return
	}
	if len(b.fields) == 0 {
		b.fields = block(&b.mem.fields, &b.fieldsTaken, max(len(b.vals)/b.stride+1, 1))
	}
	f := &b.fields[0]
	row[colVersion] = int16(RecordVersion)
	buf, err := chainFieldsInto(f, b.fbuf, &b.fbufs, row, c, tenantKeyOf(row), 0, zeroHash)
	b.fbuf = buf
	if err != nil {
		*f = ChainFields{}
		return
	}
	b.fields = b.fields[1:]
	c.fields, c.rowAt = f, &row[0]
}

// withDocs returns r, a record the Writer handed to its sink, with the JSON documents of its row
// decoded into Before, After, Diff and Metadata when the Writer left them out (see rowOf), so that
// OnReject sees the record as Redactor.Record makes it.
func withDocs(r *Record) *Record {
	if r.row == nil || r.Before != nil || r.After != nil || r.Diff != nil || r.Metadata != nil {
		return r
	}
	full, err := recordFromRow(r.row)
	if err != nil {
		return r
	}
	full.row, full.spoolSeg, full.spooled = r.row, r.spoolSeg, r.spooled
	return full
}

// encodeQuery encodes r's query parameters, already redacted, into d.
func (r *Record) encodeQuery(d *rowDocs) error {
	if len(r.Query) == 0 {
		return nil
	}
	var err error
	if d.query, err = json.Marshal(r.Query); err != nil {
		return fmt.Errorf("encoding query of record %s: %w", r.ID, err)
	}
	return nil
}

// rowBoxes holds the values of the row made before, so that an equal value is shared rather than
// boxed again, and the arenas the values new in a row are boxed into. A nil *rowBoxes boxes every
// value the ordinary way.
type rowBoxes struct {
	last []any // by column
	// The default action of the last row that had none, and the fields it was made of.
	kind         Kind
	resourceType string
	action       any

	ids     boxArena[uuid.UUID]
	times   boxArena[time.Time]
	strs    boxArena[string]
	docs    boxArena[[]byte]
	ints    boxArena[int64]
	int32s  boxArena[int32]
	address boxArena[netip.Prefix]
}

// reset zeroes the values b holds and hands its arenas' slots out again (see boxArena.reset).
func (b *rowBoxes) reset() {
	clear(b.last)
	b.kind, b.resourceType, b.action = "", "", nil
	b.ids.reset()
	b.times.reset()
	b.strs.reset()
	b.docs.reset()
	b.ints.reset()
	b.int32s.reset()
	b.address.reset()
}

// id returns the value of the id column.
func (b *rowBoxes) id(u uuid.UUID) any {
	if b == nil {
		return u
	}
	return b.ids.box(u)
}

// doc returns the value of a JSON column: the document, or a nil []byte (NULL).
func (b *rowBoxes) doc(d []byte) any {
	if b == nil || d == nil {
		return d
	}
	return b.docs.box(d)
}

// body returns the value of a body column: the JSON document of a body that the redactor has
// already converted, or nil.
func (b *rowBoxes) body(x *Body) any {
	if x == nil || len(x.Data) == 0 {
		return nil
	}
	if b == nil {
		return x.Data
	}
	return b.docs.box(x.Data)
}

// text returns s as the value of an optional text column: nil when empty.
func (b *rowBoxes) text(col int, s string) any {
	if s == "" {
		return nil
	}
	return b.str(col, s)
}

// str returns s as the value of a text column.
func (b *rowBoxes) str(col int, s string) any {
	if b == nil {
		return s
	}
	if p, ok := b.last[col].(string); ok && p == s {
		return b.last[col]
	}
	v := b.strs.box(s)
	b.last[col] = v
	return v
}

// fillRow writes into dst (len(Columns) values) the row of r, a redacted record whose JSON
// documents d holds, and returns dst. The values are those rowValues documents.
func fillRow(dst []any, r *Record, d *rowDocs, box *rowBoxes) []any {
	var ip any
	if r.IP.IsValid() {
		a := r.IP.Unmap()
		if box != nil {
			ip = box.address.box(netip.PrefixFrom(a, a.BitLen()))
		} else {
			ip = netip.PrefixFrom(a, a.BitLen())
		}
	}
	var status, duration any
	if r.Kind == KindHTTP || r.Status != 0 {
		if box != nil {
			status, duration = box.int32s.box(int32(r.Status)), box.ints.box(r.Duration.Microseconds())
		} else {
			status, duration = int32(r.Status), r.Duration.Microseconds()
		}
	}
	var action any
	switch {
	case r.Action != "":
		action = box.str(3, r.Action)
	case box != nil && box.kind == r.Kind && box.resourceType == r.ResourceType && box.action != nil:
		action = box.action // the default action of the row before
	default:
		action = box.str(3, DefaultAction(r.Kind, r.ResourceType))
		if box != nil {
			box.kind, box.resourceType, box.action = r.Kind, r.ResourceType, action
		}
	}
	var occurred any
	if box == nil {
		occurred = r.OccurredAt
	} else {
		if t, ok := box.last[1].(time.Time); ok && t == r.OccurredAt {
			occurred = box.last[1]
		} else {
			occurred = box.times.box(r.OccurredAt)
		}
		box.last[1] = occurred
	}
	return append(dst[:0],
		box.id(r.ID), occurred, box.str(2, string(r.Kind)), action, box.str(4, string(r.Severity)),
		box.text(5, r.Tenant.ID), box.text(6, r.Tenant.Slug),
		box.text(7, r.Actor.ID), box.str(8, string(r.Actor.Type)), box.text(9, r.Actor.Email), box.text(10, r.Actor.Auth),
		box.text(11, r.ResourceType), box.text(12, r.ResourceID),
		box.doc(d.before), box.doc(d.after), box.doc(d.diff),
		box.text(16, r.RequestID), box.text(17, r.Method), box.text(18, r.Route), box.text(19, r.Path), box.doc(d.query), status, duration,
		ip, box.text(24, r.UserAgent), box.body(r.RequestBody), box.body(r.ResponseBody), box.doc(d.meta), int16(RecordVersion),
		box.text(29, r.TraceID), box.text(30, r.SpanID),
	)
}
