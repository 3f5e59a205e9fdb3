package core

import "testing"

// BenchmarkChainLink measures the chain's work on the Writer's side per row of an ORM update
// record, in batches of 500: "fields" builds the canonical fields (prepareChain: jsonb's text
// form of the JSON documents), "link" hashes the row after the one before it and makes the row
// COPY takes. One op is one row.
func BenchmarkChainLink(b *testing.B) {
	const batch = 500
	red := NewRedactor(nil, nil)
	rb := newRowBatch(red, batch)
	rows := make([][]any, batch)
	for i := range rows {
		r := encodeBenchRecord(i)
		r.normalize(r.OccurredAt)
		row, err := rb.row(r)
		if err != nil {
			b.Fatal(err)
		}
		rows[i] = row
	}
	// "encode-parse" and "encode-canon" are the Writer's encoding of a row followed by its
	// fields: the documents parsed again by jsonbText, or their texts written by the encoder
	// while it encodes them (canon.go). To compare them, run the benchmark several times rather
	// than with -count, which repeats each sub-benchmark before the next.
	recs := make([]*Record, batch)
	for i := range recs {
		recs[i] = encodeBenchRecord(i)
	}
	for _, canon := range []bool{false, true} {
		name := "encode-parse"
		if canon {
			name = "encode-canon"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			var rb *rowBatch
			for i := 0; b.Loop(); i++ {
				if i%batch == 0 {
					rb = newRowBatch(red, batch)
					rb.canon = canon
				}
				var r Record
				row, err := rb.rowOf(recs[i%batch], &r)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := prepareChainWith(row, r.canon); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("fields", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for i := 0; b.Loop(); i++ {
			if _, err := prepareChain(rows[i%batch]); err != nil {
				b.Fatal(err)
			}
		}
	})
	fields, err := prepareChainRows(rows)
	if err != nil {
		b.Fatal(err)
	}
	// "link" copies each row with its chain columns; "link-in-place" links the rows of a
	// chained rowBatch, which have room for them (rowBatch.chain).
	chained := newRowBatch(red, batch)
	chained.chain()
	roomy := make([][]any, batch)
	for i := range roomy {
		r := encodeBenchRecord(i)
		r.normalize(r.OccurredAt)
		if roomy[i], err = chained.row(r); err != nil {
			b.Fatal(err)
		}
	}
	roomyFields, err := prepareChainRows(roomy)
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name   string
		rows   [][]any
		fields []*ChainFields
	}{{"link", rows, fields}, {"link-in-place", roomy, roomyFields}} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			var c *chainer
			for i := 0; b.Loop(); i++ {
				if i%batch == 0 {
					c = newChainer(batch)
					c.heads[tenantKeyOf(v.rows[0])] = &chainHead{}
				}
				if _, err := c.link(v.rows[i%batch], v.fields[i%batch]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
