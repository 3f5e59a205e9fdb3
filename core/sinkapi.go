package core

import "fmt"

// AppendRecordRow appends to dst the audit_logs row of r, a record as a Sink receives it (already
// redacted), in the spool's binary row format, and returns the extended slice. The encoding is
// exact: RecordFromRow gives back the same column values (same types, same JSON bytes, the same
// instant to the nanosecond), so a sink that forwards records elsewhere (a message queue) lets
// the far end store them as the PostgreSQL sink would have. A record that cannot be encoded is an
// error and dst is returned unchanged.
func AppendRecordRow(dst []byte, r *Record) ([]byte, error) {
	if r == nil {
		return dst, fmt.Errorf("%w: nil record", ErrInvalidRecord)
	}
	row := r.row
	if row == nil {
		var err error
		if row, err = rowValues(r); err != nil {
			return dst, err
		}
	}
	return encodeRow(dst, row)
}

// RecordFromRow decodes a row AppendRecordRow encoded. The record has every field set from the
// row and carries the row itself: the PostgreSQL sink stores those values as they are, without
// encoding the fields again (and without redacting them again: they were redacted before they
// were encoded). Malformed input is an error saying which column and byte offset; b may be
// reused afterwards.
func RecordFromRow(b []byte) (*Record, error) {
	return decodeSpooled(b)
}
