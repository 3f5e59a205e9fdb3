package core

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// TestCopySourceSendsTheSameBytes checks that the values copySource hands to pgx encode, in COPY's
// binary format, to the bytes the row's own values encode to, and that it hands every row over.
func TestCopySourceSendsTheSameBytes(t *testing.T) {
	red := NewRedactor(nil, nil)
	var rows [][]any
	for _, r := range encodeRowRecords() {
		row, err := rowValues(red.Record(r))
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	// Times pgx rounds, late and early in timestamptz's range, and in other zones.
	for _, at := range []time.Time{
		time.Date(2026, 12, 6, 1, 2, 3, 999999999, time.FixedZone("x", -5*3600)),
		time.Date(1960, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(200000, 1, 1, 0, 0, 0, 500, time.UTC),
	} {
		row := append([]any(nil), rows[0]...)
		row[1] = at
		rows = append(rows, row)
	}
	m := pgtype.NewMap()
	oids := map[int]uint32{0: pgtype.UUIDOID, 1: pgtype.TimestamptzOID}
	src := newCopySource(rows)
	n := 0
	for src.Next() {
		vals, err := src.Values()
		if err != nil {
			t.Fatal(err)
		}
		for col, oid := range oids {
			want, err := m.Encode(oid, pgtype.BinaryFormatCode, rows[n][col], nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Encode(oid, pgtype.BinaryFormatCode, vals[col], nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("row %d, column %s: %x, want %x", n, Columns[col], got, want)
			}
		}
		if _, ok := vals[0].(*copyID); !ok {
			t.Errorf("row %d: id handed over as %T", n, vals[0])
		}
		for col := 2; col < len(vals); col++ {
			if vals[col] != nil || rows[n][col] != nil {
				if b, ok := rows[n][col].([]byte); ok {
					if !bytes.Equal(vals[col].([]byte), b) {
						t.Errorf("row %d, column %s changed", n, Columns[col])
					}
				} else if vals[col] != rows[n][col] {
					t.Errorf("row %d, column %s changed", n, Columns[col])
				}
			}
		}
		n++
	}
	if n != len(rows) || src.Err() != nil {
		t.Fatalf("%d rows handed over of %d, error %v", n, len(rows), src.Err())
	}
	if _, ok := rows[0][0].(uuid.UUID); !ok {
		t.Fatal("the rows themselves changed")
	}
}
