package core

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// chainExampleFields are the fields of the worked example in docs/chain.md.
func chainExampleFields() ChainFields {
	var f ChainFields
	set := func(n int, s string) { f[n-1] = []byte(s) }
	set(1, "acme")
	set(2, "1")
	f[2] = make([]byte, 32)
	set(4, "01938a6e-5f3c-7a21-9c4e-2b7d0f1e8a90")
	set(5, "1772368215123456")
	set(6, "update")
	set(7, "invoice.update")
	set(8, "info")
	set(9, "acme")
	set(10, "Acme")
	set(11, "u-7")
	set(12, "tenant_user")
	set(14, "jwt:HS256")
	set(15, "invoices")
	set(16, "42")
	set(19, `{"total": {"to": 12.5, "from": 10}}`)
	set(20, "req-1")
	set(27, "203.0.113.7")
	set(32, "2")
	return f
}

// docBlock returns the code block after marker in docs/chain.md, without white space.
func docBlock(t *testing.T, marker string) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/chain.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- " + marker + " -->\n```\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatalf("docs/chain.md has no block after <!-- %s -->", marker)
	}
	return strings.Join(strings.Fields(string(m[1])), "")
}

// TestChainEncodingWorkedExample holds the encoding and the hash to the worked example that
// docs/chain.md publishes for verifiers in other languages.
func TestChainEncodingWorkedExample(t *testing.T) {
	f := chainExampleFields()
	enc := f.Encode(nil)
	if got, want := hex.EncodeToString(enc), docBlock(t, "chain-example-encoding"); got != want {
		t.Fatalf("encoding\n got %s\nwant %s (docs/chain.md)", got, want)
	}
	h := ChainHash(&f)
	if got, want := hex.EncodeToString(h[:]), docBlock(t, "chain-example-hash"); got != want {
		t.Fatalf("row_hash %s, docs/chain.md says %s", got, want)
	}
	if h != sha256.Sum256(enc) {
		t.Fatal("ChainHash differs from SHA-256 of Encode")
	}
	// A row whose encoding is larger than the room ChainHash keeps on the stack.
	f[16] = bytes.Repeat([]byte(`{"k": "v"}`), 1000)
	if ChainHash(&f) != sha256.Sum256(f.Encode(nil)) {
		t.Fatal("ChainHash differs from SHA-256 of Encode for a 10 kB row")
	}
}

// TestChainEncodingFraming: NULL, empty and non-empty values encode differently, and moving a
// byte from one field to the next changes the encoding (the lengths frame the fields).
func TestChainEncodingFraming(t *testing.T) {
	var a, b, c ChainFields
	b[5] = []byte{}
	c[5] = []byte("x")
	encs := [][]byte{a.Encode(nil), b.Encode(nil), c.Encode(nil)}
	for i := range encs {
		for j := range i {
			if bytes.Equal(encs[i], encs[j]) {
				t.Fatalf("encodings %d and %d are equal", i, j)
			}
		}
	}
	var d, e ChainFields
	d[6], d[7] = []byte("ab"), []byte("c")
	e[6], e[7] = []byte("a"), []byte("bc")
	if ChainHash(&d) == ChainHash(&e) {
		t.Fatal("shifting a byte between fields kept the hash")
	}
	if got := a.Encode([]byte("prefix")); !bytes.HasPrefix(got, []byte("prefixauditkit-chain-v1\x00")) || len(got) != 6+18+ChainFieldCount {
		t.Fatalf("Encode appended %q", got)
	}
	// A record of version 1 or 2 is encoded with its first 32 fields only; fields 33 and 34
	// arrived with version 3.
	for v, n := range map[string]int{"1": 32, "2": 32, "3": 34, "4": 34, "": 34} {
		var f ChainFields
		f[31] = []byte(v)
		if got := f.Encode(nil); f.Len() != n || len(got) != 18+n-1+5+len(v) {
			t.Fatalf("version %q: Len %d, encoding of %d bytes", v, f.Len(), len(got))
		}
	}
}

// chainCorpus is spoolCorpus with the values the chain encoding must get exactly right on top:
// instants before 1970 and BC with nanoseconds (stored truncated towards the past), IPv6
// addresses PostgreSQL writes with a dotted tail, records without a tenant.
func chainCorpus() []*Record {
	recs := spoolCorpus()
	extra := []*Record{
		{Kind: KindCustom, Action: "before.epoch", OccurredAt: time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		{Kind: KindCustom, Action: "epoch", OccurredAt: time.Unix(0, 999), Tenant: Tenant{ID: "t_2"}},
		{Kind: KindCustom, Action: "last", OccurredAt: maxOccurredAt},
		{Kind: KindCustom, Action: "first", OccurredAt: minOccurredAt.Add(time.Nanosecond)},
		{Kind: KindCustom, Action: "bc", OccurredAt: time.Date(-44, 3, 15, 12, 0, 0, 1, time.UTC), Tenant: Tenant{ID: "t_2"}},
		{Kind: KindHTTP, Path: "/", IP: netip.MustParseAddr("::1.2.3.4"), Tenant: Tenant{ID: "t_2"}},
		{Kind: KindHTTP, Path: "/", IP: netip.MustParseAddr("::1:0")},
		{Kind: KindHTTP, Path: "/", IP: netip.MustParseAddr("::5")},
		{Kind: KindHTTP, Path: "/", IP: netip.MustParseAddr("::")},
		{Kind: KindHTTP, Path: "/", IP: netip.MustParseAddr("0:0:0:0:0:1:0:1")},
		{Kind: KindHTTP, Path: "/", IP: netip.MustParseAddr("1:0:2:0:0:0:0:3")},
		{Kind: KindCustom, Action: "nanos", OccurredAt: time.Date(2026, 2, 3, 4, 5, 6, 999999999, time.UTC),
			Tenant: Tenant{ID: "t 3 ✓", Slug: ""}, Metadata: map[string]any{"s": "\u00e9\u0301", "n": 1.0, "e": 1e-7}},
	}
	now := time.Now()
	for _, r := range extra {
		r.normalize(now)
	}
	return append(recs, extra...)
}

// chainRow is one stored row read through ChainSQL.
type chainRow struct {
	f    ChainFields
	hash []byte
}

// readChainRows reads the chained rows of pool's audit_logs through ChainSQL, by tenant key and seq.
func readChainRows(tb testing.TB, pool *pgxpool.Pool) []chainRow {
	tb.Helper()
	rows, err := pool.Query(context.Background(), ChainSQL+` FROM audit_logs WHERE seq IS NOT NULL ORDER BY coalesce(tenant_id, '') COLLATE "C", seq`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []chainRow
	for rows.Next() {
		raw := rows.RawValues()
		if len(raw) != ChainFieldCount+1 {
			tb.Fatalf("ChainSQL returned %d columns, want %d", len(raw), ChainFieldCount+1)
		}
		var r chainRow
		for i, v := range raw[:ChainFieldCount] {
			if v != nil {
				r.f[i] = append([]byte{}, v...)
			}
		}
		r.hash = append([]byte{}, raw[ChainFieldCount]...)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// verifyChains checks every chain of pool's audit_logs as a verifier would: per tenant key, seqs
// 1..N without gap or repeat, each prev_hash the row_hash before it (zeros first), each row_hash
// the hash of the row's fields, the head at the last link, and no unchained row. It returns the
// length of each chain.
func verifyChains(tb testing.TB, pool *pgxpool.Pool) map[string]int64 {
	tb.Helper()
	lengths := map[string]int64{}
	last := map[string][]byte{}
	for _, r := range readChainRows(tb, pool) {
		key := string(r.f[0])
		seq, err := strconv.ParseInt(string(r.f[1]), 10, 64)
		if err != nil {
			tb.Fatalf("tenant key %q: seq %q: %v", key, r.f[1], err)
		}
		prev, ok := last[key]
		if !ok {
			prev = zeroHash[:]
		}
		if seq != lengths[key]+1 {
			tb.Fatalf("tenant key %q: seq %d follows %d", key, seq, lengths[key])
		}
		if !bytes.Equal(r.f[2], prev) {
			tb.Fatalf("tenant key %q seq %d: prev_hash %x, the link before has %x", key, seq, r.f[2], prev)
		}
		if h := ChainHash(&r.f); !bytes.Equal(h[:], r.hash) {
			tb.Fatalf("tenant key %q seq %d: row_hash %x, the fields hash to %x", key, seq, r.hash, h)
		}
		lengths[key], last[key] = seq, r.hash
	}
	rows, err := pool.Query(context.Background(), `SELECT tenant_key, seq, row_hash FROM audit_chain_heads WHERE seq > 0`)
	if err != nil {
		tb.Fatal(err)
	}
	var (
		key  string
		seq  int64
		hash []byte
	)
	heads := 0
	if _, err := pgx.ForEachRow(rows, []any{&key, &seq, &hash}, func() error {
		heads++
		if seq != lengths[key] || !bytes.Equal(hash, last[key]) {
			tb.Errorf("head of %q is seq %d %x, the chain ends at %d %x", key, seq, hash, lengths[key], last[key])
		}
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	if heads != len(lengths) {
		tb.Errorf("%d heads for %d chains", heads, len(lengths))
	}
	var unchained int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs WHERE seq IS NULL OR prev_hash IS NULL OR row_hash IS NULL`).Scan(&unchained); err != nil {
		tb.Fatal(err)
	}
	if unchained != 0 {
		tb.Errorf("%d rows are outside the chain", unchained)
	}
	return lengths
}

// storedChainFields returns what PostgreSQL returns through ChainSQL for the row with id.
func storedChainFields(tb testing.TB, pool *pgxpool.Pool, id uuid.UUID) chainRow {
	tb.Helper()
	rows, err := pool.Query(context.Background(), ChainSQL+` FROM audit_logs WHERE id = $1`, id)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		tb.Fatalf("record %s not stored (%v)", id, rows.Err())
	}
	var r chainRow
	for i, v := range rows.RawValues()[:ChainFieldCount] {
		if v != nil {
			r.f[i] = append([]byte{}, v...)
		}
	}
	r.hash = append([]byte{}, rows.RawValues()[ChainFieldCount]...)
	return r
}

// sameFields reports the fields where want and got differ (NULL differs from empty).
func sameFields(want, got *ChainFields) string {
	var b strings.Builder
	for i := range want {
		if (want[i] == nil) != (got[i] == nil) || !bytes.Equal(want[i], got[i]) {
			fmt.Fprintf(&b, "\n  field %d: writer %s, PostgreSQL %s", i+1, showField(want[i]), showField(got[i]))
		}
	}
	return b.String()
}

func showField(v []byte) string {
	if v == nil {
		return "NULL"
	}
	return strconv.Quote(string(v))
}

// TestChainFieldsMatchPostgres: for every record of the corpus, the fields the writer hashes
// (built from its row values) are byte for byte the fields PostgreSQL returns through ChainSQL
// once the row is stored, and the stored row_hash is their hash. Through the Writer's sink and
// through TxWriter (pgx and database/sql), each link follows the one before.
func TestChainFieldsMatchPostgres(t *testing.T) {
	ctx := context.Background()
	red := NewRedactor(nil, nil)
	check := func(t *testing.T, db *pgtest.DB, recs []*Record) {
		t.Helper()
		for _, r := range recs {
			row, err := rowValues(red.Record(r))
			if err != nil {
				t.Fatal(err)
			}
			row[1] = truncateMicro(row[1].(time.Time))
			got := storedChainFields(t, db.Pool, r.ID)
			seq, _ := strconv.ParseInt(string(got.f[1]), 10, 64)
			want, err := chainFieldsOf(row, tenantKeyOf(row), seq, [32]byte(got.f[2]))
			if err != nil {
				t.Fatal(err)
			}
			if d := sameFields(&want, &got.f); d != "" {
				t.Errorf("record %s (%s at %s):%s", r.ID, r.Action, r.OccurredAt, d)
			}
			if h := ChainHash(&want); !bytes.Equal(h[:], got.hash) {
				t.Errorf("record %s: row_hash %x, writer's fields hash to %x", r.ID, got.hash, h)
			}
		}
	}
	t.Run("sink", func(t *testing.T) {
		db := pgtest.New(t)
		recs := chainCorpus()
		batch := make([]*Record, len(recs))
		for i, r := range recs {
			batch[i] = red.Record(r)
		}
		if err := NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema}).Write(ctx, batch); err != nil {
			t.Fatal(err)
		}
		check(t, db, recs)
		verifyChains(t, db.Pool)
	})
	t.Run("txwriter pgx", func(t *testing.T) {
		db := pgtest.New(t)
		recs := chainCorpus()
		tw := NewTxWriter(db.Schema, red)
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return tw.Write(ctx, PgxExecer(tx), recs...) })
		if err != nil {
			t.Fatal(err)
		}
		check(t, db, recs)
		verifyChains(t, db.Pool)
	})
	t.Run("txwriter database/sql", func(t *testing.T) {
		db := pgtest.New(t)
		sdb, err := sql.Open("pgx", db.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer sdb.Close()
		recs := chainCorpus()
		tx, err := sdb.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := NewTxWriter(db.Schema, red).Write(ctx, tx, recs...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		check(t, db, recs)
		verifyChains(t, db.Pool)
	})
}

// TestAppendUnixMicro compares the decimal microseconds with exact arithmetic across PostgreSQL's
// range, where they exceed int64 at the end.
func TestAppendUnixMicro(t *testing.T) {
	times := []time.Time{minOccurredAt, maxOccurredAt, time.Unix(0, 0), time.Unix(0, 1), time.Unix(0, -1),
		time.Unix(-1, 0), time.Unix(-1, 1), time.Unix(0, -1000), time.Unix(0, -1001), time.Unix(1, 999999)}
	for i := range 2000 {
		span := maxOccurredAt.Unix() - minOccurredAt.Unix()
		sec := minOccurredAt.Unix() + int64(uint64(i)*0x9e3779b97f4a7c15%uint64(span))
		times = append(times, time.Unix(sec, int64(i*7919)%1e9))
	}
	for _, tm := range times {
		ns := new(big.Int).Mul(big.NewInt(tm.Unix()), big.NewInt(1e9))
		ns.Add(ns, big.NewInt(int64(tm.Nanosecond())))
		want, _ := new(big.Int).Div(ns, big.NewInt(1000)), 0 // Div rounds towards negative infinity
		if got := string(appendUnixMicro(nil, tm)); got != want.String() {
			t.Fatalf("%s: %s, want %s", tm.UTC(), got, want)
		}
	}
}

// chainTenants are the tenants the concurrency tests write to; "" is the chain of records
// without a tenant.
var chainTenants = []string{"t_alpha", "t_beta", ""}

// chainRecord returns record i of writer p, for tenant chainTenants[i%3].
func chainRecord(p string, i int) *Record {
	return &Record{
		Kind: KindUpdate, Tenant: Tenant{ID: chainTenants[i%len(chainTenants)]},
		Actor:        Actor{ID: p, Type: ActorService},
		ResourceType: "orders", ResourceID: strconv.Itoa(i),
		Diff:     map[string]Change{"n": {From: i, To: i + 1}},
		Metadata: map[string]any{"writer": p, "i": i},
	}
}

// chainHeadOf returns the head of tenant key k, or seq -1 when there is none.
func chainHeadOf(tb testing.TB, pool *pgxpool.Pool, k string) (int64, []byte) {
	tb.Helper()
	var (
		seq  int64
		hash []byte
	)
	err := pool.QueryRow(context.Background(), `SELECT seq, row_hash FROM audit_chain_heads WHERE tenant_key = $1`, k).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return -1, nil
	}
	if err != nil {
		tb.Fatal(err)
	}
	return seq, hash
}

// lostAckSink stores a batch and then reports a connection error, once: the writer retries a
// batch that is already stored.
type lostAckSink struct {
	inner Sink
	lost  atomic.Bool
}

func (a *lostAckSink) Write(ctx context.Context, recs []*Record) error {
	if err := a.inner.Write(ctx, recs); err != nil {
		return err
	}
	if a.lost.CompareAndSwap(false, true) {
		return errors.New("read tcp: connection reset by peer")
	}
	return nil
}

// TestChainRetryChainsNothingTwice: a batch written again after its first attempt committed
// (the acknowledgement was lost), partly or wholly, or with a record in it twice, chains only
// the records not stored yet, after the links already made; the stored links do not move.
func TestChainRetryChainsNothingTwice(t *testing.T) {
	ctx := context.Background()
	t.Run("sink", func(t *testing.T) {
		db := pgtest.New(t)
		sink := NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema})
		var first, second []*Record
		for i := range 12 {
			first = append(first, chainRecord("a", i))
		}
		for i := range 6 {
			second = append(second, chainRecord("b", i))
		}
		for _, r := range append(slices.Clone(first), second...) {
			r.normalize(time.Now())
		}
		if err := sink.Write(ctx, first); err != nil {
			t.Fatal(err)
		}
		before := storedChainFields(t, db.Pool, first[5].ID)
		dup := *second[0]
		retry := append(append(slices.Clone(first), second...), &dup)
		if err := sink.Write(ctx, retry); err != nil {
			t.Fatal(err)
		}
		if err := sink.Write(ctx, retry); err != nil { // and once more: all stored
			t.Fatal(err)
		}
		if n := db.Count(t); n != 18 {
			t.Fatalf("audit_logs has %d rows, want 18", n)
		}
		after := storedChainFields(t, db.Pool, first[5].ID)
		if d := sameFields(&before.f, &after.f); d != "" || !bytes.Equal(before.hash, after.hash) {
			t.Fatalf("a stored link changed:%s", d)
		}
		lengths := verifyChains(t, db.Pool)
		if lengths["t_alpha"] != 6 || lengths["t_beta"] != 6 || lengths[""] != 6 {
			t.Fatalf("chain lengths %v, want 6 each", lengths)
		}
		// The retried batch's new records follow the first batch's in batch order.
		for i, r := range second {
			got := storedChainFields(t, db.Pool, r.ID)
			if want := strconv.Itoa(4 + 1 + i/3); string(got.f[1]) != want {
				t.Errorf("record b%d has seq %s, want %s", i, got.f[1], want)
			}
		}
	})
	t.Run("writer", func(t *testing.T) {
		db := pgtest.New(t)
		sink := &lostAckSink{inner: NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema})}
		w := NewWriter(sink, WriterOptions{BatchSize: 100, FlushInterval: time.Hour, MinBackoff: time.Millisecond})
		for i := range 60 {
			if err := w.Enqueue(chainRecord("w", i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if s := w.Stats(); s.Retried != 1 || s.Written != 60 {
			t.Fatalf("stats %+v, want 60 written after one retry", s)
		}
		if n := db.Count(t); n != 60 {
			t.Fatalf("audit_logs has %d rows, want 60", n)
		}
		if lengths := verifyChains(t, db.Pool); lengths["t_alpha"] != 20 || lengths["t_beta"] != 20 || lengths[""] != 20 {
			t.Fatalf("chain lengths %v, want 20 each", lengths)
		}
	})
}

// TestChainTxWriterRollbackLeavesHead: records a TxWriter wrote in a transaction that rolled back
// leave the heads as they were (a new tenant's head included), the Writer's sink waits for the
// transaction while it holds the head, and the chain goes on without a gap.
func TestChainTxWriterRollbackLeavesHead(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	sink := NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema})
	batch := func(p string, n int) []*Record {
		var recs []*Record
		for i := range n {
			r := chainRecord(p, 3*i) // all of tenant t_alpha
			r.normalize(time.Now())
			recs = append(recs, r)
		}
		return recs
	}
	if err := sink.Write(ctx, batch("s1", 5)); err != nil {
		t.Fatal(err)
	}
	seq, hash := chainHeadOf(t, db.Pool, "t_alpha")
	if seq != 5 {
		t.Fatalf("head seq %d, want 5", seq)
	}

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recs := append(batch("tx", 3), &Record{Kind: KindCustom, Action: "new.tenant", Tenant: Tenant{ID: "t_new"}})
	if err := NewTxWriter(db.Schema, nil).Write(ctx, PgxExecer(tx), recs...); err != nil {
		t.Fatal(err)
	}
	// The transaction holds t_alpha's head until it ends: the sink cannot append meanwhile.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = sink.Write(short, batch("s2", 1))
	cancel()
	if err == nil {
		t.Fatal("the sink appended to a chain whose head an open transaction holds")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if s, h := chainHeadOf(t, db.Pool, "t_alpha"); s != seq || !bytes.Equal(h, hash) {
		t.Fatalf("after rollback the head is %d %x, want %d %x", s, h, seq, hash)
	}
	if s, _ := chainHeadOf(t, db.Pool, "t_new"); s != -1 {
		t.Fatalf("after rollback a head of t_new exists (seq %d)", s)
	}
	if err := sink.Write(ctx, batch("s3", 2)); err != nil {
		t.Fatal(err)
	}
	if lengths := verifyChains(t, db.Pool); lengths["t_alpha"] != 7 || len(lengths) != 1 {
		t.Fatalf("chain lengths %v, want t_alpha 7 only", lengths)
	}
}

// Environment of the child processes of TestChainConcurrentProcesses.
const (
	envChainChild  = "AUDITKIT_CHAIN_CHILD" // writer or tx
	envChainURL    = "AUDITKIT_CHAIN_URL"
	envChainSchema = "AUDITKIT_CHAIN_SCHEMA"
	envChainName   = "AUDITKIT_CHAIN_NAME"
)

// chainProcessRecords is how many records each process of TestChainConcurrentProcesses stores.
const chainProcessRecords = 2000

// TestChainConcurrentProcesses: four processes append to the same three chains at once, three
// through a Writer made by Open (batches of different sizes) and one through TxWriter in
// explicit transactions, some of which roll back. Afterwards each tenant has one unbroken chain
// holding every stored record: seqs 1..N, every link, every hash recomputed from ChainSQL.
func TestChainConcurrentProcesses(t *testing.T) {
	if mode := os.Getenv(envChainChild); mode != "" {
		chainChild(t, mode)
		return
	}
	db := pgtest.New(t)
	procs := []string{"writer", "writer", "writer", "tx"}
	errs := make(chan error, len(procs))
	for i, mode := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChainConcurrentProcesses$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), envChainChild+"="+mode, envChainURL+"="+db.URL, envChainSchema+"="+db.Schema,
			envChainName+"="+fmt.Sprintf("p%d", i))
		go func() {
			out, err := cmd.CombinedOutput()
			if err != nil {
				err = fmt.Errorf("process %d (%s): %w\n%s", i, mode, err, out)
			}
			errs <- err
		}()
	}
	for range procs {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}
	if n := db.Count(t); n != len(procs)*chainProcessRecords {
		t.Fatalf("audit_logs has %d rows, want %d", n, len(procs)*chainProcessRecords)
	}
	lengths := verifyChains(t, db.Pool)
	var sum int64
	for _, k := range chainTenants {
		if lengths[k] == 0 {
			t.Errorf("no chain for tenant key %q", k)
		}
		sum += lengths[k]
	}
	if sum != int64(len(procs)*chainProcessRecords) || len(lengths) != len(chainTenants) {
		t.Fatalf("chain lengths %v hold %d records, want %d", lengths, sum, len(procs)*chainProcessRecords)
	}
	t.Logf("chain lengths %v", lengths)
}

// chainChild is one process of TestChainConcurrentProcesses.
func chainChild(t *testing.T, mode string) {
	ctx := context.Background()
	name := os.Getenv(envChainName)
	url, schema := os.Getenv(envChainURL), os.Getenv(envChainSchema)
	switch mode {
	case "writer":
		// Different batch sizes make the processes' batches overlap in every way.
		size := 16 + 45*int(name[len(name)-1]-'0')
		w, err := Open(ctx, Config{DatabaseURL: url, Schema: schema, BatchSize: size, FlushInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		for i := range chainProcessRecords {
			if err := w.Enqueue(chainRecord(name, i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if s := w.Stats(); s.Written != chainProcessRecords {
			t.Fatalf("%s: stats %+v", name, s)
		}
	case "tx":
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		tw := NewTxWriter(schema, nil)
		for i, tx := 0, 0; i < chainProcessRecords; tx++ {
			n := min(1+tx%7, chainProcessRecords-i)
			recs := make([]*Record, n)
			for j := range recs {
				recs[j] = chainRecord(name, i+j)
			}
			rollback := tx%5 == 4
			err := pgx.BeginFunc(ctx, pool, func(t pgx.Tx) error {
				if err := tw.Write(ctx, PgxExecer(t), recs...); err != nil {
					return err
				}
				if rollback {
					return errRolledBack
				}
				return nil
			})
			if err != nil && !(rollback && errors.Is(err, errRolledBack)) {
				t.Fatal(err)
			}
			if !rollback {
				i += n
			}
		}
	default:
		t.Fatalf("unknown child mode %q", mode)
	}
}

var errRolledBack = errors.New("rolled back on purpose")

// execOnly is an Execer that cannot read rows.
type execOnly struct{ tx *sql.Tx }

func (e execOnly) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return e.tx.ExecContext(ctx, q, args...)
}

// rowsQuerier reads rows through QueryRows only, as an adapter for ent's drivers does.
type rowsQuerier struct{ execOnly }

func (r rowsQuerier) QueryRows(ctx context.Context, q string, args ...any) (Rows, error) {
	return r.tx.QueryContext(ctx, q, args...)
}

// TestChainTxWriterExecers: TxWriter chains through a RowsQuerier, and writes outside the chain
// (NULL links, heads untouched) through an Execer that cannot read rows or after WithoutChain.
func TestChainTxWriterExecers(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	sdb, err := sql.Open("pgx", db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	write := func(tw *TxWriter, wrap func(*sql.Tx) Execer, p string) {
		t.Helper()
		tx, err := sdb.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if err := tw.Write(ctx, wrap(tx), chainRecord(p, 0), chainRecord(p, 3)); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	tw := NewTxWriter(db.Schema, nil)
	write(tw, func(tx *sql.Tx) Execer { return rowsQuerier{execOnly{tx}} }, "rows")
	if lengths := verifyChains(t, db.Pool); lengths["t_alpha"] != 2 {
		t.Fatalf("chain lengths %v, want t_alpha 2", lengths)
	}
	write(tw, func(tx *sql.Tx) Execer { return execOnly{tx} }, "exec")
	write(tw.WithoutChain(), func(tx *sql.Tx) Execer { return tx }, "off")
	var unchained int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE seq IS NULL AND prev_hash IS NULL AND row_hash IS NULL`).Scan(&unchained); err != nil {
		t.Fatal(err)
	}
	if seq, _ := chainHeadOf(t, db.Pool, "t_alpha"); unchained != 4 || seq != 2 {
		t.Fatalf("%d unchained rows and head seq %d, want 4 and 2", unchained, seq)
	}
}
