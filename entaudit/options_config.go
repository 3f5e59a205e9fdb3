package entaudit

// disabled reports whether the configuration turned recording of ORM changes off, through
// Options.DisableORMDiffs or the Writer (core.Config.DisableORMDiffs reaching it through
// core.Open).
func (h *hook) disabled() bool {
	return h.opts.DisableORMDiffs || !h.opts.Writer.CaptureORMDiffs()
}
