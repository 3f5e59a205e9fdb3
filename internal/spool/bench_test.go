package spool

import (
	"testing"
)

// BenchmarkAppend1KiB measures Append of a 1 KiB payload in each sync mode, acking as a consumer
// would so that segments are recycled:
//
//	go test -run '^$' -bench BenchmarkAppend1KiB -benchtime 2s ./internal/spool/
func BenchmarkAppend1KiB(b *testing.B) {
	for _, mode := range []SyncMode{SyncBatch, SyncInterval, SyncNever} {
		b.Run(mode.String(), func(b *testing.B) {
			s := open(b, Options{Dir: b.TempDir(), Sync: mode})
			p := make([]byte, 1024)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			var seg uint64
			pending := 0
			for b.Loop() {
				n, err := s.Append(p)
				if err != nil {
					b.Fatal(err)
				}
				if n != seg || pending == 4096 {
					b.StopTimer()
					s.Ack(seg, pending)
					seg, pending = n, 0
					b.StartTimer()
				}
				pending++
			}
			b.StopTimer()
			b.ReportMetric(float64(s.Stats().Syncs), "syncs")
		})
	}
}
