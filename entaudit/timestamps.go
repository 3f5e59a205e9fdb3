package entaudit

import (
	"slices"

	"github.com/auditkit/auditkit/core"
)

// noOp reports whether an update with diff d writes no audit row: it changed nothing, or only
// the type's auto-update timestamps (Type.AutoUpdateTime), unless Options.RecordNoOpUpdates or
// Options.RecordTimestampOnlyUpdates asks for such records.
func (c *capture) noOp(d map[string]core.Change) bool {
	if c.h.opts.RecordNoOpUpdates {
		return false
	}
	if len(d) == 0 {
		return true
	}
	if c.h.opts.RecordTimestampOnlyUpdates || c.t == nil || c.t.Type == nil {
		return false
	}
	for col := range d {
		if !slices.Contains(c.t.AutoUpdateTime, col) {
			return false
		}
	}
	return true
}
