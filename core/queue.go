package core

// batchQueue holds accepted records in chunks of one batch each. Only the last chunk is partly
// filled, so taking a batch pops the first chunk: O(1) however long the queue, where shifting one
// slice would copy the whole queue under the lock for every batch. Chunks come back empty after
// their batch was handed to the sink and are reused, so that Enqueue does not allocate.
//
// It is not safe for concurrent use; the Writer guards it with its mutex.
type batchQueue struct {
	ring  [][]*Record // chunks, oldest at head; grows only when more chunks are queued than ever before
	head  int
	n     int // chunks in ring
	len   int // records in all chunks
	batch int // chunk capacity
	free  [][]*Record
}

func newBatchQueue(batch, keep int) *batchQueue {
	q := &batchQueue{ring: make([][]*Record, 4), batch: batch, free: make([][]*Record, 0, keep)}
	// One chunk ready, so that the first records accepted do not allocate either.
	q.free = append(q.free, make([]*Record, 0, batch))
	return q
}

// push appends r and reports whether it filled its chunk (a batch is ready).
func (q *batchQueue) push(r *Record) (full bool) {
	if q.n == 0 || len(q.ring[q.index(q.n-1)]) == q.batch {
		q.pushChunk()
	}
	i := q.index(q.n - 1)
	q.ring[i] = append(q.ring[i], r)
	q.len++
	return len(q.ring[i]) == q.batch
}

// pop removes the oldest chunk when it is full, or with partial set whatever it holds; nil when
// there is nothing to take.
func (q *batchQueue) pop(partial bool) []*Record {
	if q.n == 0 {
		return nil
	}
	c := q.ring[q.head]
	if len(c) < q.batch && !partial {
		return nil
	}
	q.ring[q.head] = nil
	q.head = q.index(1)
	q.n--
	q.len -= len(c)
	return c
}

// recycle takes back a chunk pop returned once its records are no longer needed.
func (q *batchQueue) recycle(c []*Record) {
	clear(c) // the records must not stay reachable through a spare chunk
	if len(q.free) < cap(q.free) && cap(c) == q.batch {
		q.free = append(q.free, c[:0])
	}
}

// chunks returns the queued chunks, oldest first. They stay owned by the queue.
func (q *batchQueue) chunks() [][]*Record {
	out := make([][]*Record, q.n)
	for i := range q.n {
		out[i] = q.ring[q.index(i)]
	}
	return out
}

// reset empties the queue and returns how many records it held.
func (q *batchQueue) reset() int {
	n := q.len
	for c := q.pop(true); c != nil; c = q.pop(true) {
		q.recycle(c)
	}
	return n
}

func (q *batchQueue) index(i int) int { return (q.head + i) % len(q.ring) }

func (q *batchQueue) pushChunk() {
	if q.n == len(q.ring) {
		ring := make([][]*Record, 2*len(q.ring))
		for i := range q.n {
			ring[i] = q.ring[q.index(i)]
		}
		q.ring, q.head = ring, 0
	}
	var c []*Record
	if k := len(q.free); k > 0 {
		c, q.free = q.free[k-1], q.free[:k-1]
	} else {
		c = make([]*Record, 0, q.batch)
	}
	q.ring[q.index(q.n)] = c
	q.n++
}
