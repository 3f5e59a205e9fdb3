package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// testSecret signs and verifies the tokens of the tests.
const testSecret = "gin-ent-example-test-secret-0123456789abcdef"

// record is a row of audit_logs as the test reads it.
type record struct {
	Kind, Action, Severity, ActorID, TenantID, ResourceType, ResourceID, RequestID, Route string
	Status                                                                                int
	IP                                                                                    string
	Before, After, Diff, Metadata                                                         map[string]any
}

func (r record) String() string {
	return fmt.Sprintf("%s %s %s/%s actor=%s tenant=%s req=%s status=%d diff=%v meta=%v", r.Kind, r.Action, r.ResourceType, r.ResourceID, r.ActorID, r.TenantID, r.RequestID, r.Status, r.Diff, r.Metadata)
}

// TestEndToEnd runs the example as a real server on a loopback port, plays the demo scenario
// with signed (and one forged) tokens, and checks what landed in audit_logs.
func TestEndToEnd(t *testing.T) {
	db := pgtest.NewEmpty(t) // a fresh schema; the example migrates it itself
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := open(ctx, settings{DatabaseURL: pgtest.URL(), Schema: db.Schema, Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	srv, err := a.serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()

	resps, err := scenario(ctx, srv.url, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.writer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, a)
	byRequest := map[string][]record{}
	for _, r := range recs {
		byRequest[r.RequestID] = append(byRequest[r.RequestID], r)
	}
	// Every request has exactly one http record, and the ORM records of a request share its
	// request id, actor, tenant and client IP.
	for i, resp := range resps {
		rs := byRequest[resp.RequestID]
		var https []record
		for _, r := range rs {
			if r.Kind == "http" {
				https = append(https, r)
			}
		}
		if len(https) != 1 {
			t.Fatalf("step %d: %d http records for request %s: %v", i, len(https), resp.RequestID, rs)
		}
		h := https[0]
		for _, r := range rs {
			if r.ActorID != h.ActorID || r.TenantID != h.TenantID || r.IP != "127.0.0.1" {
				t.Errorf("step %d: record %v does not carry the request's identity %s/%s/127.0.0.1 (ip %q)", i, r, h.ActorID, h.TenantID, r.IP)
			}
		}
	}
	changes := func(step int) []record {
		var out []record
		for _, r := range byRequest[resps[step].RequestID] {
			if r.Kind != "http" {
				out = append(out, r)
			}
		}
		return out
	}

	// 0: alice's create: one insert, the Sensitive api_secret redacted.
	c0 := changes(0)
	if len(c0) != 1 || c0[0].Kind != "insert" || c0[0].Action != "customers.insert" || c0[0].ActorID != "alice" ||
		c0[0].TenantID != "acme" || c0[0].After["name"] != "Initech" || c0[0].After["api_secret"] != "[REDACTED]" {
		t.Errorf("create: %v", c0)
	}
	if bytes.Contains(mustJSON(t, c0), []byte("s3cr3t")) {
		t.Error("the api secret reached audit_logs")
	}
	// 3: the upgrade: tier and the credit added, as stored.
	c3 := changes(3)
	if len(c3) != 1 || c3[0].Kind != "update" || c3[0].Diff["tier"] == nil ||
		c3[0].Diff["credit"].(map[string]any)["from"] != 100.0 || c3[0].Diff["credit"].(map[string]any)["to"] != 105.0 {
		t.Errorf("update: %v", c3)
	}
	// 4: the rolled-back transfer: the request is recorded, no change is.
	if c := changes(4); len(c) != 0 {
		t.Errorf("rolled-back transfer left change records: %v", c)
	}
	// 5: the transfer: two updates, in statement order.
	c5 := changes(5)
	if len(c5) != 2 || c5[0].ResourceID == c5[1].ResourceID {
		t.Errorf("transfer: %v", c5)
	}
	// 6: the order: an insert with the customer's foreign key.
	c6 := changes(6)
	if len(c6) != 1 || c6[0].ResourceType != "orders" || c6[0].After["customer_orders"] == nil {
		t.Errorf("order: %v", c6)
	}
	// 7: bob cannot touch alice's customer: his request is recorded, nothing changed.
	if c := changes(7); len(c) != 0 {
		t.Errorf("bob's refused delete changed %v", c)
	}
	// 8: a forged token never becomes an actor.
	h8 := byRequest[resps[8].RequestID]
	if len(h8) != 1 || h8[0].ActorID != "" || h8[0].Severity != "warning" || h8[0].Metadata["auth_failure"] == nil {
		t.Errorf("forged token: %v", h8)
	}
	// 9: alice deletes Hooli: the delete with its before image.
	c9 := changes(9)
	if len(c9) != 1 || c9[0].Kind != "delete" || c9[0].Before["name"] != "Hooli" {
		t.Errorf("delete: %v", c9)
	}
}

// The demo prints the trail.
func TestDemo(t *testing.T) {
	db := pgtest.NewEmpty(t)
	var out strings.Builder
	if err := run(context.Background(), &out, settings{DatabaseURL: pgtest.URL(), Schema: db.Schema, Secret: testSecret}, "", true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"customers.insert", "customers.update", "orders.insert", "customers.delete", "POST /transfers", "409", "(anonymous)", "401 warning"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out.String())
		}
	}
}

// Without PostgreSQL the example says so in one line.
func TestDatabaseUnreachable(t *testing.T) {
	err := run(context.Background(), &strings.Builder{}, settings{DatabaseURL: "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=2", Schema: "gin_ent_example", Secret: testSecret}, "", true)
	if err == nil || !strings.Contains(err.Error(), "not reachable") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error = %v, want one line saying PostgreSQL is not reachable", err)
	}
}

func readRecords(t *testing.T, a *app) []record {
	t.Helper()
	rows, err := a.sqlDB.Query(`SELECT kind::text, action, severity::text, coalesce(actor_id, ''), coalesce(tenant_id, ''),
		coalesce(resource_type, ''), coalesce(resource_id, ''), coalesce(request_id, ''), coalesce(route, ''), coalesce(status, 0),
		coalesce(host(ip), ''), before, after, diff, metadata FROM audit_logs ORDER BY occurred_at, id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []record
	for rows.Next() {
		var r record
		var before, after, diff, meta []byte
		if err := rows.Scan(&r.Kind, &r.Action, &r.Severity, &r.ActorID, &r.TenantID, &r.ResourceType, &r.ResourceID,
			&r.RequestID, &r.Route, &r.Status, &r.IP, &before, &after, &diff, &meta); err != nil {
			t.Fatal(err)
		}
		for _, p := range []struct {
			b []byte
			m *map[string]any
		}{{before, &r.Before}, {after, &r.After}, {diff, &r.Diff}, {meta, &r.Metadata}} {
			if p.b != nil {
				if err := json.Unmarshal(p.b, p.m); err != nil {
					t.Fatal(err)
				}
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
