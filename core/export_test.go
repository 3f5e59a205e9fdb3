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
