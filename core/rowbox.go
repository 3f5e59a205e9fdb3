package core

import "unsafe"

// Putting a value that is not a pointer (a uuid.UUID, a time.Time, a string, a []byte) into an
// interface copies it into a new heap object of its own, and the interface points to that copy.
// A row of audit_logs holds a handful of such values that are new in each row, so that boxing
// them was most of the allocations a row cost. A boxArena makes the same interface values with
// their copies kept side by side in one slice per batch instead: the interface is exactly what
// any(v) makes (same dynamic type, an equal value, read by every consumer of the row unchanged:
// pgx, the chain's encoding, the spool's row format, the personal-value encryption), only the
// copy it points to lives in the arena.
//
// This relies on the layout of an empty interface (a type word, then a pointer to the value, for
// every type that is not pointer-shaped) and on the value never changing while its interface can
// be read: an arena hands out each slot once, and the slots of a full slice are not written again
// (the next value goes into the next slice) until reset, which the owner of the arena calls only
// once nothing holds an interface the arena made (see Writer.recycle). The garbage collector keeps
// the whole slice alive while any of its interfaces is reachable.

// eface is the layout of an empty interface.
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

// boxArena boxes values of type T, which must not be pointer-shaped (a pointer, a map, a chan, a
// func, or a struct or array holding only one of those), into interfaces whose copies share
// slices of chunk values.
type boxArena[T any] struct {
	typ    unsafe.Pointer // the type word of any(T)
	free   []T            // slots not handed out yet
	chunk  int
	slices [][]T // the slices of chunk slots made, handed out again after reset
	used   int   // how many of slices have been taken since reset
}

// newBoxArena returns an arena that allocates its slots chunk at a time.
func newBoxArena[T any](chunk int) boxArena[T] {
	var zero T
	v := any(zero)
	return boxArena[T]{typ: (*eface)(unsafe.Pointer(&v)).typ, chunk: max(chunk, 1)}
}

// box returns an interface holding v, equal to any(v), whose copy of v is a slot of the arena.
// A zero arena (no type word) boxes v the ordinary way.
func (a *boxArena[T]) box(v T) any {
	if a.typ == nil {
		return v
	}
	if len(a.free) == 0 {
		if a.used == len(a.slices) {
			a.slices = append(a.slices, make([]T, a.chunk))
		}
		a.free = a.slices[a.used]
		a.used++
	}
	p := &a.free[0]
	*p = v
	a.free = a.free[1:len(a.free):len(a.free)]
	var x any
	e := (*eface)(unsafe.Pointer(&x))
	e.typ, e.data = a.typ, unsafe.Pointer(p)
	return x
}

// reset zeroes every slot the arena handed out and hands them out again, chunk at a time as
// before. Call it only when no interface the arena made can be read any more.
func (a *boxArena[T]) reset() {
	for _, s := range a.slices[:a.used] {
		clear(s)
	}
	a.free, a.used = nil, 0
}
