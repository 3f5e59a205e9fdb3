package store_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// TestStoreDecryptsAndShowsErased: records written encrypted (core.PostgresSinkOptions.PII) are
// read back plain through List and Get by a store with the cipher, as ciphertext by a store
// without it, and after core.EraseSubject the erased subject's values read as [ERASED] while
// another subject's still decrypt; no plaintext is left in the table and the chain verifies.
func TestStoreDecryptsAndShowsErased(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	key := make([]byte, core.MasterKeySize)
	_, _ = rand.Read(key)
	pii, err := core.NewPIICipher(key, []string{"email", "phone"})
	if err != nil {
		t.Fatal(err)
	}
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema, PII: pii}),
		core.WriterOptions{BatchSize: 10, FlushInterval: time.Millisecond})
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	const email, phone, ip, agent, other = "ada@example.test", "+44-555-0100", "198.51.100.9", "AdaAgent/1.0", "grace@example.test"
	recs := []*core.Record{
		{Kind: core.KindHTTP, Tenant: core.Tenant{ID: "acme"}, Actor: core.Actor{ID: "u1", Email: email},
			IP: netip.MustParseAddr(ip), UserAgent: agent, Method: "GET", Path: "/a", Status: 200},
		{Kind: core.KindUpdate, Tenant: core.Tenant{ID: "acme"}, Actor: core.Actor{ID: "u2", Email: other},
			ResourceType: "users", ResourceID: "1",
			After: map[string]any{"email": email, "phone": phone, "plan": "pro"},
			Diff:  map[string]core.Change{"phone": {From: nil, To: phone}}},
	}
	for _, r := range recs {
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	plainStore := func(p *core.PIICipher) *store.Store {
		st, err := store.New(db.Pool, store.Options{Schema: db.Schema, PII: p})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		return st
	}
	st, raw := plainStore(pii), plainStore(nil)
	sc := store.TenantScope("acme")

	get := func(st *store.Store, i int) *store.Record {
		t.Helper()
		r, err := st.Get(ctx, sc, recs[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	image := func(b json.RawMessage) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	r0 := get(st, 0)
	if r0.ActorEmail != email || r0.IP != ip || r0.UserAgent != agent || r0.Metadata != nil {
		t.Fatalf("decrypted request: email %q ip %q agent %q metadata %s", r0.ActorEmail, r0.IP, r0.UserAgent, r0.Metadata)
	}
	r1 := get(st, 1)
	if a := image(r1.After); a["email"] != email || a["phone"] != phone || a["plan"] != "pro" || r1.ActorEmail != other {
		t.Fatalf("decrypted change: after %s, actor %q", r1.After, r1.ActorEmail)
	}
	if d := image(r1.Diff); d["phone"].(map[string]any)["to"] != phone || d["phone"].(map[string]any)["from"] != nil {
		t.Fatalf("decrypted diff %s", r1.Diff)
	}
	page, err := st.List(ctx, sc, store.Query{})
	if err != nil || len(page.Records) != 2 {
		t.Fatalf("list: %d records, %v", len(page.Records), err)
	}
	for _, r := range page.Records {
		if strings.Contains(r.ActorEmail, core.EncryptedPrefix) {
			t.Fatalf("list left %q encrypted", r.ActorEmail)
		}
	}
	if r := get(raw, 0); !strings.HasPrefix(r.ActorEmail, core.EncryptedPrefix) || r.IP != "" {
		t.Fatalf("a store without the key shows email %q ip %q", r.ActorEmail, r.IP)
	}

	before, err := st.VerifyChain(ctx, sc, core.VerifyOptions{})
	if err != nil || !before.OK {
		t.Fatalf("chain before erasure: %+v %v", before, err)
	}
	for _, subj := range []string{core.ActorSubject("u1"), core.ResourceSubject("users", "1")} {
		if res, err := st.EraseSubject(ctx, "acme", subj); err != nil || res.Keys != 1 || res.Records != 1 {
			t.Fatalf("erase %s: %+v %v", subj, res, err)
		}
	}
	after, err := st.VerifyChain(ctx, sc, core.VerifyOptions{})
	if err != nil || !after.OK || after.Rows != before.Rows+2 {
		t.Fatalf("chain after erasure: %+v %v", after, err)
	}
	r0 = get(st, 0)
	if r0.ActorEmail != core.ErasedValue || r0.IP != core.ErasedValue || r0.UserAgent != core.ErasedValue {
		t.Fatalf("erased request reads email %q ip %q agent %q", r0.ActorEmail, r0.IP, r0.UserAgent)
	}
	r1 = get(st, 1)
	if a := image(r1.After); a["email"] != core.ErasedValue || a["phone"] != core.ErasedValue || a["plan"] != "pro" {
		t.Fatalf("erased image reads %s", r1.After)
	}
	if r1.ActorEmail != other {
		t.Fatalf("another subject's email reads %q after the erasure", r1.ActorEmail)
	}

	var dump string
	if err := db.Pool.QueryRow(ctx, `SELECT string_agg(t::text, E'\n') FROM `+pgx.Identifier{db.Schema, "audit_logs"}.Sanitize()+` t`).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{email, phone, ip, agent, other} {
		if strings.Contains(dump, v) {
			t.Fatalf("the table holds %q in plain text", v)
		}
	}
	var usable int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "audit_subject_keys"}.Sanitize()+
		` WHERE subject IN ('actor:u1', 'resource:users:1') AND wrapped_key IS NOT NULL`).Scan(&usable); err != nil || usable != 0 {
		t.Fatalf("%d erased keys still wrapped (%v)", usable, err)
	}
}
