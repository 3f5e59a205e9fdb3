// Package inttext writes the decimal text of many integers into shared buffers, so that a
// result of many rows does not allocate a string for each row's integer key.
package inttext

import (
	"strconv"
	"unsafe"
)

// Texts makes the decimal texts of integers. The zero value is ready to use; a Texts is not safe
// for concurrent use. Its buffers are only appended to, never written again, so every string it
// returned stays as it was made.
type Texts struct{ buf []byte }

// Format returns strconv.FormatInt(x, 10). Integers from 0 to 99 are strconv's own strings; the
// others are written into the current buffer: the first holds one text (the usual statement
// changes one row), the next ones more, up to 2 KiB.
func (t *Texts) Format(x int64) string {
	if x >= 0 && x < 100 {
		return strconv.FormatInt(x, 10)
	}
	if cap(t.buf)-len(t.buf) < 20 { // the longest int64 text
		t.buf = make([]byte, 0, min(20+cap(t.buf)*4, 2048))
	}
	start := len(t.buf)
	t.buf = strconv.AppendInt(t.buf, x, 10)
	return unsafe.String(&t.buf[start], len(t.buf)-start)
}
