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
	b.Run("link", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		var c *chainer
		for i := 0; b.Loop(); i++ {
			if i%batch == 0 {
				c = newChainer(batch)
				c.heads[tenantKeyOf(rows[0])] = &chainHead{}
			}
			if _, err := c.link(rows[i%batch], &fields[i%batch]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
