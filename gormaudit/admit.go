package gormaudit

import (
	"errors"
	"fmt"

	"gorm.io/gorm"

	"github.com/auditkit/auditkit/core"
)

// Under core.FailClosed a change must never commit without room for its records. The records of
// a transaction are known just before its COMMIT: room for them is reserved then (core.Admit, one
// reservation per run of records sharing a context, since the policy is the context's), and the
// transaction is rolled back instead of committed when any of it is refused. The reservations
// travel with the records once the transaction committed (core.DispatchReserved), and are given
// back when it did not. A raw statement recorded outside any transaction (CaptureRawSQL) commits
// on its own, before its record exists: its room is reserved before it runs, and it does not run
// when the room is refused. Under core.FailOpen core.Admit returns at once and nothing is held.

// admit reserves room for recs, run by run of records sharing a context. The reservations are
// indexed by run (see deliver); the slice is nil when no run needed one (FailOpen), so that the
// fail-open path allocates nothing. On error nothing is held.
func (p *Plugin) admit(recs []pendingRecord) ([]*core.Reservation, error) {
	var out []*core.Reservation
	for i, g := 0, 0; i < len(recs); g++ {
		j := runEnd(recs, i)
		res, err := core.Admit(recs[i].ctx, p.s.Writer, j-i)
		if err != nil {
			release(out)
			return nil, err
		}
		if res != nil {
			for len(out) < g {
				out = append(out, nil)
			}
			out = append(out, res)
		}
		i = j
	}
	return out, nil
}

// runEnd returns the end of the run of records starting at i that share its context.
func runEnd(recs []pendingRecord, i int) int {
	j := i + 1
	for j < len(recs) && recs[j].ctx == recs[i].ctx {
		j++
	}
	return j
}

// release gives back the room of reservations whose records will not be delivered.
func release(res []*core.Reservation) {
	for _, r := range res {
		r.Release()
	}
}

// refusedCommit is the error of a transaction rolled back instead of committed because the
// room for its records was refused; it wraps core.ErrAuditUnavailable through err.
func refusedCommit(err, rollbackErr error) error {
	return errors.Join(fmt.Errorf("gormaudit: the transaction was rolled back because its audit records could not be accepted: %w", err),
		rollbackErr)
}

// admitRaw reserves room, under FailClosed, for the record of a data-changing raw statement that
// runs outside any transaction and so commits before its record exists. When the room is
// refused the statement does not run: it fails with the error, which wraps
// core.ErrAuditUnavailable. afterRaw hands the reservation on with the record.
func (p *Plugin) admitRaw(db *gorm.DB) {
	stmt := db.Statement
	if db.Error != nil || db.DryRun || p.s.Writer.Policy(stmt.Context) != core.FailClosed || !isWrite(stmt.SQL.String()) {
		return
	}
	if _, inTx := stmt.ConnPool.(gorm.TxCommitter); inTx || txnOf(stmt.ConnPool) != nil {
		return // recorded at the transaction's COMMIT, which reserves the room
	}
	res, err := core.Admit(stmt.Context, p.s.Writer, 1)
	if err != nil {
		db.AddError(fmt.Errorf("gormaudit: the statement was not run because its audit record could not be accepted: %w", err))
		return
	}
	if res != nil {
		stmt.ConnPool = &rawTx{ConnPool: stmt.ConnPool, orig: stmt.ConnPool, p: p, res: res}
	}
}
