package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// FailurePolicy says what happens to the application's work when its audit record cannot be
// accepted: the queue is full and there is no spool (or the spool is full), the Writer is closed,
// or the database refuses the writer for a reason retrying cannot fix (see Health).
type FailurePolicy uint8

const (
	// FailOpen lets the application's work proceed without its record. The loss is counted in
	// Stats.Dropped, reported through the logger and visible in Health. It is the default: auditing
	// never breaks the application.
	FailOpen FailurePolicy = iota
	// FailClosed refuses the work instead: an audited GORM or ent write fails with an error wrapping
	// ErrAuditUnavailable (its transaction is rolled back), an HTTP request gets 503 before its
	// handler runs, and Log returns the error. The record of every change that is allowed to commit
	// has its room reserved before the commit (see Writer.Reserve), so a change never commits
	// without a place for its record.
	//
	// For "the record exists if and only if the change committed", even across a crash of the
	// process, write the records in the application's transaction instead (gormaudit and entaudit's
	// InTransaction modes, or LogTx).
	FailClosed
)

// String returns "open" or "closed".
func (p FailurePolicy) String() string {
	switch p {
	case FailOpen:
		return "open"
	case FailClosed:
		return "closed"
	}
	return fmt.Sprintf("FailurePolicy(%d)", uint8(p))
}

// ParseFailurePolicy parses "open" or "closed" (any case; surrounding spaces ignored).
func ParseFailurePolicy(s string) (FailurePolicy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "open":
		return FailOpen, nil
	case "closed":
		return FailClosed, nil
	}
	return 0, fmt.Errorf("auditkit: unknown failure policy %q (want open or closed)", s)
}

// ErrAuditUnavailable is wrapped by the errors returned, under FailClosed, for work refused
// because its audit record could not be accepted. The error says why: the queue or spool is full,
// the Writer is closed, or the database refuses the writer.
var ErrAuditUnavailable = errors.New("auditkit: audit trail unavailable")

// WithFailurePolicy returns a context under which audited work follows p instead of the Writer's
// policy (WriterOptions.FailurePolicy, Config.FailurePolicy): for example FailClosed for the
// handful of operations that must never happen unaudited, in an application that is otherwise
// fail-open.
func WithFailurePolicy(ctx context.Context, p FailurePolicy) context.Context {
	return context.WithValue(ctx, policyKey, p)
}

// FailurePolicyFromContext returns the policy set by WithFailurePolicy, if any.
func FailurePolicyFromContext(ctx context.Context) (FailurePolicy, bool) {
	p, ok := value(ctx, policyKey).(FailurePolicy)
	return p, ok
}

// Policy returns the failure policy for work done under ctx: the context's (WithFailurePolicy),
// or else w's. A nil Writer's policy is FailOpen.
func (w *Writer) Policy(ctx context.Context) FailurePolicy {
	if p, ok := FailurePolicyFromContext(ctx); ok {
		return p
	}
	if w == nil {
		return FailOpen
	}
	return w.opts.FailurePolicy
}

// Admit reserves room on w for n records of work done under ctx, when ctx's policy is FailClosed
// (see Writer.Policy). Under FailOpen it reserves nothing and returns (nil, nil); a nil
// Reservation is valid and its methods enqueue as the Writer's do. Integrations call it before
// the work commits and hand the records over with the Reservation once it has.
func Admit(ctx context.Context, w *Writer, n int) (*Reservation, error) {
	if w == nil || n <= 0 || w.Policy(ctx) != FailClosed {
		return nil, nil
	}
	return w.Reserve(n)
}
