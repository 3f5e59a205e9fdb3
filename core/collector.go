package core

import (
	"net/netip"
	"sync"
)

// Collector gathers the records produced while serving one request, so that they can be stamped
// with the request's metadata and written together when it ends. It is safe for concurrent use:
// handlers may start goroutines that write through the ORM with the request's context.
type Collector struct {
	ip      netip.Addr // set before the collector is shared
	mu      sync.Mutex
	records []*Record
	done    bool
	late    LateRecords
	res     *Reservation // room reserved for the records held (FailClosed)
}

// NewCollector returns an empty collector.
func NewCollector() *Collector { return &Collector{} }

// Add appends records. After Finish, records are handed to the function Finish was given instead,
// so that work which outlives its request is still recorded.
func (c *Collector) Add(recs ...*Record) { c.AddReserved(nil, recs...) }

// AddReserved appends records like Add, together with room reserved for them on the request's
// Writer (see Writer.Reserve), which the HTTP integration uses when it writes them
// (TakeReservation). res may be nil. After Finish the records go, with res, to the function
// FinishReserved was given (what is left of res is released afterwards).
func (c *Collector) AddReserved(res *Reservation, recs ...*Record) {
	c.mu.Lock()
	if !c.done {
		c.records = append(c.records, recs...)
		if c.res == nil {
			c.res = res
		} else {
			c.res.Join(res)
		}
		c.mu.Unlock()
		return
	}
	late := c.late
	c.mu.Unlock()
	if late != nil {
		for _, r := range recs {
			late.LateRecord(res, r)
		}
	}
	res.Release()
}

// TakeReservation returns the room reserved for the records held, and forgets it: the caller
// enqueues them with Writer.EnqueueReserved and releases what is left. It may return nil.
func (c *Collector) TakeReservation() *Reservation {
	c.mu.Lock()
	defer c.mu.Unlock()
	res := c.res
	c.res = nil
	return res
}

// SetClientIP records the client address of the request the collector belongs to, so that
// records made outside it (written inside a transaction, for example) carry it too. Call it
// before the collector is shared with other goroutines.
func (c *Collector) SetClientIP(ip netip.Addr) { c.ip = ip }

// ClientIP returns the address set with SetClientIP.
func (c *Collector) ClientIP() netip.Addr { return c.ip }

// Len returns the number of records held.
func (c *Collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.records)
}

// Records returns a copy of the slice of records held, in the order they were added.
func (c *Collector) Records() []*Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Record(nil), c.records...)
}

// Finish returns the records held and closes the collector: records added later go to late
// (which may be nil to discard them). Finish may be called once; later calls return nil.
func (c *Collector) Finish(late func(*Record)) []*Record {
	if late == nil {
		return c.FinishReserved(nil)
	}
	return c.FinishReserved(func(_ *Reservation, r *Record) { late(r) })
}

// FinishReserved is Finish for an integration that enqueues late records with the room reserved
// for them: late receives each record added after Finish with the Reservation it was added with
// (nil when none; use Writer.EnqueueReserved). The collector releases what is left of it after
// late returns.
func (c *Collector) FinishReserved(late func(*Reservation, *Record)) []*Record {
	if late == nil {
		return c.FinishTo(nil)
	}
	return c.FinishTo(lateFunc(late))
}

// LateRecords receives the records added to a Collector after FinishTo.
type LateRecords interface {
	// LateRecord is called with each record added after the collector finished, and the
	// Reservation it was added with (nil when none), like FinishReserved's function.
	LateRecord(res *Reservation, r *Record)
}

// lateFunc is a FinishReserved function as a LateRecords.
type lateFunc func(*Reservation, *Record)

func (f lateFunc) LateRecord(res *Reservation, r *Record) { f(res, r) }

// FinishTo is FinishReserved with the late records handed to l (nil discards them): an
// integration whose per-request state implements LateRecords finishes its collector without
// allocating a function value per request.
func (c *Collector) FinishTo(l LateRecords) []*Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil
	}
	c.done = true
	c.late = l
	out := c.records
	c.records = nil
	return out
}
