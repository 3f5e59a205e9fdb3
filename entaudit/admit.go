package entaudit

import (
	"context"
	"errors"
	"fmt"

	"entgo.io/ent"

	"github.com/auditkit/auditkit/core"
)

// Under core.FailClosed a change must never commit without room for its records. The records of
// a transaction (an ent.Tx, or one the hook began) are known just before its COMMIT: room for
// them is reserved then (core.Admit, per mutation, since the policy is that of the mutation's
// context), and the transaction is rolled back instead of committed when any of it is refused.
// The reservations travel with the records once the transaction committed
// (core.DispatchReserved) and are given back when it did not.
//
// A mutation outside any transaction (a create, or an update or delete on a driver not wrapped
// with Driver) commits on its own, before its records exist. Its room is reserved before it runs,
// for the records it is known to make: its row, and one link for each edge id it adds (a create),
// or one record (an update or delete, whose rows are not known in advance); it does not run when
// that room is refused. Records past that estimate are given room after the statement when
// there is some, and otherwise go to the Writer as under FailOpen. Wrap the driver with Driver
// and use an ent.Tx where every record must have its room: the hook's transactions reserve
// exactly.
//
// Under core.FailOpen core.Admit returns at once and nothing is held.

// admit reserves room for the records of ps, one reservation per mutation. On error nothing is
// held.
func (h *hook) admit(ps []pending) error {
	for i := range ps {
		res, err := core.Admit(ps[i].ctx, h.opts.Writer, len(ps[i].recs))
		if err != nil {
			release(ps[:i])
			return err
		}
		if res != nil {
			ps[i].res.Release()
			ps[i].res = res
		}
	}
	return nil
}

// release gives back the room reserved for records that will not be delivered.
func release(ps []pending) {
	for i := range ps {
		ps[i].res.Release()
		ps[i].res = nil
	}
}

// refusedCommit is the error of a transaction rolled back instead of committed because the room
// for its records was refused; it wraps core.ErrAuditUnavailable through err.
func refusedCommit(err, rollbackErr error) error {
	return errors.Join(fmt.Errorf("entaudit: the transaction was rolled back because its audit records could not be accepted: %w", err),
		rollbackErr)
}

// admitAlone reserves, before a mutation outside any transaction runs, room for the records it
// is known to make (see above), and returns how much it reserved. The error refuses the mutation.
func (h *hook) admitAlone(ctx context.Context, c *capture) (*core.Reservation, int, error) {
	if h.opts.InTransaction {
		return nil, 0, nil
	}
	w := h.opts.Writer
	if w.Policy(ctx) != core.FailClosed {
		return nil, 0, nil
	}
	n := 1
	if c.op.Is(ent.OpCreate) {
		for _, e := range c.m.AddedEdges() {
			n += len(c.m.AddedIDs(e))
		}
	}
	res, err := core.Admit(ctx, w, n)
	if err != nil {
		return nil, 0, fmt.Errorf("entaudit: the %s of %s was not run because its audit records could not be accepted: %w",
			opName(c.op), c.t.Name, err)
	}
	return res, n, nil
}

// topUp adds room for the records of a mutation outside a transaction that made more than the
// reserved estimate. Its change has committed: room that is refused now is only logged.
func (h *hook) topUp(ctx context.Context, res *core.Reservation, reserved, n int) *core.Reservation {
	if res == nil || n <= reserved {
		return res
	}
	more, err := core.Admit(ctx, h.opts.Writer, n-reserved)
	if err != nil {
		h.log.Warn("entaudit: a change outside a transaction made more audit records than room was reserved for, "+
			"and no more room could be reserved; the rest are handed to the writer as they are",
			"records", n, "reserved", reserved, "error", err)
		return res
	}
	res.Join(more)
	return res
}

// opName names an ent operation in an error.
func opName(op ent.Op) string {
	switch {
	case op.Is(ent.OpCreate):
		return "create"
	case op.Is(ent.OpUpdate | ent.OpUpdateOne):
		return "update"
	case op.Is(ent.OpDelete | ent.OpDeleteOne):
		return "delete"
	}
	return op.String()
}
