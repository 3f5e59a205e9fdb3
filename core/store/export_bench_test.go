package store

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

// benchRow is one export row as PostgreSQL sends it: id and occurred_at in binary, the rest as
// text, sized like the loader's rows.
func benchRow() [][]byte {
	at := make([]byte, 8)
	binary.BigEndian.PutUint64(at, uint64(time.Now().UnixMicro()-pgEpoch))
	img := []byte(`{"id": 4242, "name": "invoices 4242 of the billing account", "status": "sent", "amount": 81234, "currency": "EUR", "owner": "user-07", "tags": ["web", "crm"], "notes": "Imported from the legacy system; reviewed by the finance team on the last working day of the quarter.", "updated_by": "user-12", "version": 3}`)
	return [][]byte{
		[]byte("0123456789abcdef"), at, []byte("update"), []byte("invoices.update"), []byte("info"),
		[]byte("tenant-042"), []byte("t042"), []byte("user-042-07"), []byte("tenant_user"), []byte("user-042-07@tenant-042.example"),
		[]byte("jwt:RS256"), []byte("invoices"), []byte("4242"), []byte("req-00ab12cd34ef5678"), nil, nil, nil, nil, nil, nil, nil,
		nil, img, img, []byte(`{"status": {"from": "open", "to": "sent"}, "amount": {"from": 10, "to": 12}}`),
		[]byte(`{"source": "web", "feature": "billing", "trace_id": "00ab12cd34ef5678", "client": "web-app"}`), nil, nil, []byte("1"),
	}
}

// BenchmarkExportEncode measures the Go side of an export per row.
//
//	go test ./core/store -run '^$' -bench ExportEncode -benchmem
func BenchmarkExportEncode(b *testing.B) {
	row := benchRow()
	if len(row) != len(ExportColumns) {
		b.Fatalf("row has %d columns", len(row))
	}
	for _, c := range []struct {
		name string
		f    func([]byte, [][]byte) []byte
	}{{"ndjson", appendNDJSONRow}, {"csv", appendCSVRow}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 4096)
			for b.Loop() {
				buf = c.f(buf[:0], row)
			}
			b.SetBytes(int64(len(buf)))
			if strings.Count(string(buf), "\n") != 1 {
				b.Fatal("not one line")
			}
		})
	}
}
