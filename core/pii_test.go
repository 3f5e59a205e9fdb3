package core_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// Personal values the erasure tests write and then look for in the stored rows.
const (
	piiEmail = "ada.lovelace@example.test"
	piiPhone = "+44-20-7946-0018"
	piiIP    = "203.0.113.77"
	piiAgent = "AdaBrowser/1.815 (Analytical Engine)"
	piiOther = "grace.hopper@example.test"
)

// NewMasterKey returns a random master key in the base64 form of ErasureConfig.MasterKey.
func newMasterKey(t testing.TB) string {
	t.Helper()
	b := make([]byte, core.MasterKeySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// piiRecords are a user's request (email, address, user agent) and a change of a row image
// holding an email and a phone number, and another user's request.
func piiRecords() []*core.Record {
	return []*core.Record{
		{Kind: core.KindHTTP, Tenant: core.Tenant{ID: "acme"}, Actor: core.Actor{ID: "u1", Email: piiEmail},
			IP: netip.MustParseAddr(piiIP), UserAgent: piiAgent, Method: "GET", Path: "/x", Status: 200,
			Metadata: map[string]any{"note": "kept"}},
		{Kind: core.KindUpdate, Tenant: core.Tenant{ID: "acme"}, Actor: core.Actor{ID: "u1"},
			ResourceType: "users", ResourceID: "42",
			Before: map[string]any{"id": 42, "Email": "old." + piiEmail, "phone": piiPhone, "plan": "free"},
			After:  map[string]any{"id": 42, "Email": piiEmail, "phone": piiPhone, "plan": "pro"},
			Diff:   map[string]core.Change{"email": {From: "old." + piiEmail, To: piiEmail}, "plan": {From: "free", To: "pro"}}},
		{Kind: core.KindHTTP, Tenant: core.Tenant{ID: "acme"}, Actor: core.Actor{ID: "u2", Email: piiOther},
			Method: "GET", Path: "/y", Status: 200},
	}
}

// openPII opens a Writer on db with erasure configured by key ("" for none).
func openPII(t *testing.T, db *pgtest.DB, key string) *core.Writer {
	t.Helper()
	cfg := core.Config{DatabaseURL: db.URL, Schema: db.Schema, BatchSize: 10, FlushInterval: time.Millisecond}
	if key != "" {
		cfg.Erasure = core.ErasureConfig{MasterKey: key, PersonalFields: []string{"email", "phone"}}
	}
	w, err := core.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	return w
}

func writeAll(t *testing.T, w *core.Writer, recs []*core.Record) {
	t.Helper()
	ctx := context.Background()
	for _, r := range recs {
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// tableText returns every row of audit_logs (and of the subject keys) as text: what a dump holds.
func tableText(t *testing.T, db *pgtest.DB, table string) string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT t::text FROM `+pgx.Identifier{db.Schema, table}.Sanitize()+` t`)
	if err != nil {
		t.Fatal(err)
	}
	all, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(all, "\n")
}

func verifyChain(t *testing.T, db *pgtest.DB, tenant string) {
	t.Helper()
	rep, err := core.Verify(context.Background(), db.Pool, tenant, core.VerifyOptions{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Rows == 0 {
		t.Fatalf("chain of %q: ok=%v rows=%d problems=%v", tenant, rep.OK, rep.Rows, rep.Problems)
	}
}

// TestErasureEncryptsAndErases: with a master key, the Writer stores the actor's email, address
// and user agent and the personal fields of row images as enc:v1: values, so that no plaintext is
// in the table; the chain verifies; EraseSubject destroys the subject's key (wrapped_key NULL),
// counts its records, records the erasure, and the chain still verifies; the next record of the
// subject gets a new key.
func TestErasureEncryptsAndErases(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	w := openPII(t, db, newMasterKey(t))
	writeAll(t, w, piiRecords())

	var email, agent string
	var ip *string
	var meta string
	if err := db.Pool.QueryRow(ctx, `SELECT actor_email, user_agent, host(ip), metadata::text FROM `+
		pgx.Identifier{db.Schema, "audit_logs"}.Sanitize()+` WHERE actor_id = 'u1' AND kind = 'http'`).Scan(&email, &agent, &ip, &meta); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(email, core.EncryptedPrefix) || !strings.HasPrefix(agent, core.EncryptedPrefix) || ip != nil ||
		!strings.Contains(meta, `"ip_enc": "enc:v1:`) || !strings.Contains(meta, `"note": "kept"`) {
		t.Fatalf("stored email %q, agent %q, ip %v, metadata %s", email, agent, ip, meta)
	}
	dump := tableText(t, db, "audit_logs")
	for _, v := range []string{piiEmail, piiPhone, piiIP, piiAgent, piiOther, "old."} {
		if strings.Contains(dump, v) {
			t.Fatalf("the table holds %q in plain text", v)
		}
	}
	for _, v := range []string{`""plan"": ""pro""`, `""id"": 42`} { // quotes doubled in a row's text
		if !strings.Contains(dump, v) {
			t.Fatalf("the table lost the field that is not personal: %s", v)
		}
	}
	verifyChain(t, db, "acme")

	res, err := core.EraseSubject(ctx, db.Pool, db.Schema, "acme", core.ActorSubject("u1"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Keys != 1 || res.Records != 1 { // the request; the update has no actor values
		t.Fatalf("erase result %+v, want 1 key and 1 record", res)
	}
	var live int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "audit_subject_keys"}.Sanitize()+
		` WHERE subject = 'actor:u1' AND (wrapped_key IS NOT NULL OR erased_at IS NULL)`).Scan(&live); err != nil || live != 0 {
		t.Fatalf("%d keys of actor:u1 still usable (%v)", live, err)
	}
	var erasure string
	if err := db.Pool.QueryRow(ctx, `SELECT metadata::text FROM `+pgx.Identifier{db.Schema, "audit_logs"}.Sanitize()+
		` WHERE action = $1`, core.SubjectErasedAction).Scan(&erasure); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(erasure, `"subject": "actor:u1"`) || !strings.Contains(erasure, res.KeyIDs[0]) {
		t.Fatalf("erasure record metadata %s", erasure)
	}
	verifyChain(t, db, "acme")

	// The subject's next record is encrypted under a new key.
	writeAll(t, w, []*core.Record{{Kind: core.KindCustom, Action: "again", Tenant: core.Tenant{ID: "acme"}, Actor: core.Actor{ID: "u1", Email: piiEmail}}})
	if err := db.Pool.QueryRow(ctx, `SELECT actor_email FROM `+pgx.Identifier{db.Schema, "audit_logs"}.Sanitize()+
		` WHERE action = 'again'`).Scan(&email); err != nil {
		t.Fatal(err)
	}
	if id, _ := core.EncryptedKeyID(email); id == "" || id == res.KeyIDs[0] {
		t.Fatalf("the record after the erasure is stored as %q, key %q", email, id)
	}
	verifyChain(t, db, "acme")
}

// TestErasureTxWriter: LogTx through a TxWriter with PII encrypts in the caller's transaction.
func TestErasureTxWriter(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	key, _ := core.ParseMasterKey(newMasterKey(t))
	p, err := core.NewPIICipher(key, []string{"EMAIL"})
	if err != nil {
		t.Fatal(err)
	}
	tw := core.NewTxWriter(db.Schema, nil).WithPII(p)
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := core.LogTx(ctx, core.PgxExecer(tx), tw, core.Entry{Action: "user.changed", Tenant: core.Tenant{ID: "acme"},
			Actor: core.Actor{ID: "u9", Email: piiEmail}, ResourceType: "users", ResourceID: "9",
			After: map[string]any{"email": piiOther}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The same through database/sql, as the ORM integrations call it.
	sdb := stdlib.OpenDBFromPool(db.Pool)
	t.Cleanup(func() { _ = sdb.Close() })
	stx, err := sdb.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.LogTx(ctx, stx, tw, core.Entry{Action: "user.changed", Tenant: core.Tenant{ID: "acme"},
		Actor: core.Actor{ID: "u9", Email: piiEmail}}); err != nil {
		t.Fatal(err)
	}
	if err := stx.Commit(); err != nil {
		t.Fatal(err)
	}
	// An Execer that cannot read rows cannot encrypt: the record is refused, not stored plain.
	if _, err := core.LogTx(ctx, execOnly{sdb}, tw, core.Entry{Action: "x", Actor: core.Actor{ID: "u9", Email: piiEmail}}); err == nil {
		t.Fatal("an Execer without rows wrote a record with personal values")
	}
	dump := tableText(t, db, "audit_logs")
	if strings.Contains(dump, piiEmail) || strings.Contains(dump, piiOther) || strings.Count(dump, core.EncryptedPrefix) != 3 {
		t.Fatalf("TxWriter stored %s", dump)
	}
	var keys int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "audit_subject_keys"}.Sanitize()).Scan(&keys); err != nil || keys != 2 {
		t.Fatalf("%d subject keys (%v), want actor:u9 and resource:users:9", keys, err)
	}
	verifyChain(t, db, "acme")
}

// execOnly is an Execer that cannot read rows.
type execOnly struct{ db *sql.DB }

func (e execOnly) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return e.db.ExecContext(ctx, q, args...)
}

// TestErasureConcurrentKeyCreation: writers racing to store the first records of the same new
// subject create exactly one active key, and every record is encrypted under it.
func TestErasureConcurrentKeyCreation(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	key := newMasterKey(t)
	const writers = 4
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		w := openPII(t, db, key)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				if err := w.Enqueue(&core.Record{Kind: core.KindCustom, Action: "race", Tenant: core.Tenant{ID: "acme"},
					Actor: core.Actor{ID: "new-user", Email: piiEmail}, Metadata: map[string]any{"w": i, "j": j}}); err != nil {
					errs <- err
				}
			}
			errs <- w.Flush(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var keys, active int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE erased_at IS NULL) FROM `+
		pgx.Identifier{db.Schema, "audit_subject_keys"}.Sanitize()+` WHERE subject = 'actor:new-user'`).Scan(&keys, &active); err != nil {
		t.Fatal(err)
	}
	if keys != 1 || active != 1 {
		t.Fatalf("%d keys, %d active, want one", keys, active)
	}
	var distinct, n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(DISTINCT split_part(actor_email, ':', 3)), count(*) FROM `+
		pgx.Identifier{db.Schema, "audit_logs"}.Sanitize()+` WHERE action = 'race'`).Scan(&distinct, &n); err != nil {
		t.Fatal(err)
	}
	if distinct != 1 || n != writers*5 {
		t.Fatalf("%d records under %d key ids", n, distinct)
	}
	verifyChain(t, db, "acme")
}

// TestErasureOffStoresPlainValues: without a master key nothing is encrypted and no key is made.
func TestErasureOffStoresPlainValues(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := openPII(t, db, "")
	writeAll(t, w, piiRecords())
	dump := tableText(t, db, "audit_logs")
	for _, v := range []string{piiEmail, piiPhone, piiIP, piiAgent} {
		if !strings.Contains(dump, v) {
			t.Fatalf("the table lacks %q", v)
		}
	}
	if strings.Contains(dump, core.EncryptedPrefix) || tableText(t, db, "audit_subject_keys") != "" {
		t.Fatal("values were encrypted without a master key")
	}
}

// TestErasureUnchainedSink: a sink with the chain off encrypts too.
func TestErasureUnchainedSink(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	key, _ := core.ParseMasterKey(newMasterKey(t))
	p, err := core.NewPIICipher(key, []string{"email", "phone"})
	if err != nil {
		t.Fatal(err)
	}
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema, DisableChain: true, PII: p}),
		core.WriterOptions{FlushInterval: time.Millisecond})
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	writeAll(t, w, piiRecords())
	dump := tableText(t, db, "audit_logs")
	for _, v := range []string{piiEmail, piiPhone, piiIP, piiAgent, piiOther} {
		if strings.Contains(dump, v) {
			t.Fatalf("the table holds %q in plain text", v)
		}
	}
	if !strings.Contains(dump, core.EncryptedPrefix) {
		t.Fatal("nothing was encrypted")
	}
}

// TestErasureSchemaCheck: with a master key, Open refuses a role that cannot read and create
// subject keys, and names the grant; the same role without erasure is accepted.
func TestErasureSchemaCheck(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	q := pgx.Identifier{db.Schema}.Sanitize()
	role, _ := db.NewRole(t, "nokeys", "INSERT, SELECT ON "+q+".audit_logs", "SELECT, INSERT, UPDATE ON "+q+".audit_chain_heads")
	cfg := core.Config{DatabaseURL: withParam(pgtest.URL(), "role="+role), Schema: db.Schema, ConnectTimeout: 2 * time.Second}
	if err := core.CheckSchema(context.Background(), cfg); err != nil {
		t.Fatalf("without erasure: %v", err)
	}
	cfg.Erasure.MasterKey = newMasterKey(t)
	err := core.CheckSchema(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "audit_subject_keys") || !strings.Contains(err.Error(), "GRANT SELECT, INSERT") {
		t.Fatalf("with erasure: %v", err)
	}
}
