package core

import "time"

// RowValuesForBenchmark runs a record through the same steps the Writer applies before COPY
// (defaults, redaction, encoding), so that benchmarks compare the Writer with raw COPY of
// identically encoded rows.
func RowValuesForBenchmark(red *Redactor, r *Record) []any {
	r.normalize(time.Now())
	v, err := rowValues(red.Record(r))
	if err != nil {
		panic(err)
	}
	return v
}

// NormalizeForBenchmark fills a record's defaults (id, time, action) as Enqueue does, for
// benchmarks that hand records to a Sink directly.
func NormalizeForBenchmark(r *Record) { r.normalize(time.Now()) }

// ProcessCPUForBenchmark returns the CPU time the process has used (processCPU).
func ProcessCPUForBenchmark() time.Duration { return processCPU() }

// LinkRowsForBenchmark links rows, in order, as the first links of their chains, and returns them
// with their seq, prev_hash and row_hash: the rows a chained writer copies, for benchmarks that
// copy chained rows directly.
func LinkRowsForBenchmark(rows [][]any) ([][]any, error) {
	fields, err := prepareChainRows(rows)
	if err != nil {
		return nil, err
	}
	c := newChainer(len(rows))
	for _, k := range chainKeys(rows) {
		c.heads[k] = &chainHead{}
	}
	out := make([][]any, len(rows))
	for i, row := range rows {
		if out[i], err = c.link(row, fields[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// LinkedAheadForBenchmark returns how many batches s stored linked ahead of their transaction.
func LinkedAheadForBenchmark(s *PostgresSink) uint64 { return s.ahead.Load() }

// PrelinkedForBenchmark returns how many of those batches s stored with the links the Writer's
// encoding goroutine made (prelink).
func PrelinkedForBenchmark(s *PostgresSink) uint64 { return s.adopted.Load() }
