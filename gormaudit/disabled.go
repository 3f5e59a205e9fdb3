package gormaudit

// disabled reports whether the configuration turned recording of ORM changes off, through
// Options.DisableORMDiffs or the Writer (core.Config.DisableORMDiffs reaching it through
// core.Open).
func (s *settings) disabled() bool {
	return s.DisableORMDiffs || !s.Writer.CaptureORMDiffs()
}
