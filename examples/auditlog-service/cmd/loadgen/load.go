package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/schema"
)

type loadOptions struct {
	rows, tenants, days int
	seed                uint64
}

// The data set's vocabulary. Filters in the benchmark pick from the same lists.
var (
	resourceTypes = []string{"invoices", "customers", "orders", "users", "projects", "tickets", "payments", "subscriptions", "documents", "teams"}
	customActions = []string{"user.login", "user.logout", "invoice.sent", "export.requested", "tenant.settings_changed", "api_key.rotated"}
	sources       = []string{"web", "api", "job", "cli"}
	features      = []string{"billing", "crm", "reports", "admin", "search"}
	agents        = []string{"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15", "curl/8.7.1", "python-requests/2.32", "okhttp/4.12.0"}
	statuses      = []int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 201, 201, 204, 400, 401, 403, 404, 404, 500}
)

const actorsPerTenant = 50

func tenantID(i int) string        { return fmt.Sprintf("tenant-%03d", i) }
func actorID(tenant, i int) string { return fmt.Sprintf("user-%03d-%02d", tenant, i) }
func tenantIP(tenant, i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(tenant), byte(i / 250), byte(i%250 + 1)})
}

// generator makes rows in core.Columns order.
type generator struct {
	rng        *rand.Rand
	start      time.Time
	step       time.Duration
	n, tenants int
	i          int
	buf        [][]byte
}

func (g *generator) kind() core.Kind {
	switch x := g.rng.IntN(100); {
	case x < 50:
		return core.KindHTTP
	case x < 75:
		return core.KindUpdate
	case x < 87:
		return core.KindInsert
	case x < 92:
		return core.KindDelete
	}
	return core.KindCustom
}

func (g *generator) severity() core.Severity {
	switch x := g.rng.IntN(1000); {
	case x < 900:
		return core.SeverityInfo
	case x < 960:
		return core.SeverityWarning
	case x < 995:
		return core.SeverityError
	}
	return core.SeverityCritical
}

func (g *generator) image(res string, id int) []byte {
	return fmt.Appendf(nil, `{"id": %d, "name": "%s %d of the %s account", "status": "%s", "amount": %d, "currency": "EUR", "owner": "user-%02d", "tags": ["%s", "%s"], "notes": "Imported from the legacy system; reviewed by the finance team on the last working day of the quarter.", "updated_by": "user-%02d", "version": %d}`,
		id, res, id, features[g.rng.IntN(len(features))], []string{"draft", "open", "sent", "paid", "closed"}[g.rng.IntN(5)],
		g.rng.IntN(100000), g.rng.IntN(actorsPerTenant), sources[g.rng.IntN(len(sources))], features[g.rng.IntN(len(features))],
		g.rng.IntN(actorsPerTenant), g.rng.IntN(20))
}

// row returns the next row's values.
func (g *generator) row() []any {
	i := g.i
	g.i++
	at := g.start.Add(time.Duration(i) * g.step).Add(time.Duration(g.rng.IntN(60_000)-30_000) * time.Millisecond)
	tenant := g.rng.IntN(g.tenants)
	actor := g.rng.IntN(actorsPerTenant)
	kind := g.kind()
	sev := g.severity()
	res := resourceTypes[g.rng.IntN(len(resourceTypes))]
	resID := g.rng.IntN(5000)

	var id uuid.UUID
	binary.BigEndian.PutUint64(id[0:8], uint64(at.UnixMilli())<<16|0x7000|uint64(g.rng.IntN(4096)))
	binary.BigEndian.PutUint64(id[8:16], g.rng.Uint64()>>2|0x8000000000000000)

	actorType, email, auth := "tenant_user", any(fmt.Sprintf("%s@tenant-%03d.example", actorID(tenant, actor), tenant)), "jwt:RS256"
	actorName := actorID(tenant, actor)
	if actor >= actorsPerTenant-3 {
		actorType, email, auth = "service", nil, "jwks:RS256"
		actorName = fmt.Sprintf("svc-%03d-%d", tenant, actor)
	}
	var action string
	var before, after, diff, query, meta any
	var method, route, path, agent, status, duration, ip any
	switch kind {
	case core.KindHTTP:
		action = "http.request"
		m := []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}[g.rng.IntN(6)]
		method = m
		route = "/api/v1/" + res + "/:id"
		path = fmt.Sprintf("/api/v1/%s/%d", res, resID)
		st := statuses[g.rng.IntN(len(statuses))]
		status = int32(st)
		duration = int64(200 + g.rng.IntN(50000))
		ip = netip.PrefixFrom(tenantIP(tenant, g.rng.IntN(500)), 32)
		agent = agents[g.rng.IntN(len(agents))]
		if g.rng.IntN(4) == 0 {
			query = fmt.Appendf(nil, `{"page": ["%d"], "sort": ["-updated_at"]}`, g.rng.IntN(20))
		}
		switch {
		case st >= 500:
			sev = core.SeverityError
		case st == 401 || st == 403:
			sev = core.SeverityWarning
		}
	case core.KindCustom:
		action = customActions[g.rng.IntN(len(customActions))]
	default:
		action = res + "." + string(kind)
		b, a := g.image(res, resID), g.image(res, resID)
		switch kind {
		case core.KindInsert:
			after = a
		case core.KindDelete:
			before = b
		default:
			before, after = b, a
			diff = fmt.Appendf(nil, `{"status": {"from": "open", "to": "sent"}, "amount": {"from": %d, "to": %d}}`, g.rng.IntN(1000), g.rng.IntN(1000))
		}
	}
	meta = fmt.Appendf(nil, `{"source": "%s", "feature": "%s", "trace_id": "%016x", "client": "%s"}`,
		sources[g.rng.IntN(len(sources))], features[g.rng.IntN(len(features))], g.rng.Uint64(), []string{"web-app", "mobile", "partner-api"}[g.rng.IntN(3)])
	return []any{
		id, at, string(kind), action, string(sev),
		tenantID(tenant), fmt.Sprintf("t%03d", tenant),
		actorName, actorType, email, auth,
		res, fmt.Sprint(resID),
		before, after, diff,
		fmt.Sprintf("req-%016x", g.rng.Uint64()), method, route, path, query, status, duration,
		ip, agent, nil, nil, meta, int16(core.RecordVersion),
		fmt.Sprintf("%016x%016x", g.rng.Uint64()|1, g.rng.Uint64()), fmt.Sprintf("%016x", g.rng.Uint64()|1),
	}
}

// rowSource feeds n rows to CopyFrom.
type rowSource struct {
	g    *generator
	left int
	cur  []any
}

func (s *rowSource) Next() bool {
	if s.left == 0 {
		return false
	}
	s.left--
	s.cur = s.g.row()
	return true
}
func (s *rowSource) Values() ([]any, error) { return s.cur, nil }
func (s *rowSource) Err() error             { return nil }

func load(ctx context.Context, dbURL, name string, o loadOptions) error {
	pool, err := connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return errExists
	}
	t0 := time.Now()
	if _, err := schema.Migrate(ctx, pool, schema.WithSchema(name)); err != nil {
		return err
	}
	table := pgx.Identifier{name, "audit_logs"}
	rows, err := pool.Query(ctx, `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'audit_logs' AND indexname <> 'audit_logs_pkey'`, name)
	if err != nil {
		return err
	}
	type index struct{ name, def string }
	var indexes []index
	for rows.Next() {
		var ix index
		if err := rows.Scan(&ix.name, &ix.def); err != nil {
			return err
		}
		indexes = append(indexes, ix)
	}
	rows.Close()
	for _, ix := range indexes {
		if _, err := pool.Exec(ctx, `DROP INDEX `+pgx.Identifier{name, ix.name}.Sanitize()); err != nil {
			return err
		}
	}
	if _, err := pool.Exec(ctx, `ALTER TABLE `+table.Sanitize()+` DISABLE TRIGGER audit_logs_notify`); err != nil {
		return err
	}
	for t := range o.tenants {
		if _, err := pool.Exec(ctx, `INSERT INTO `+pgx.Identifier{name, "audit_tenants"}.Sanitize()+` (id, slug, name) VALUES ($1, $2, $3)`,
			tenantID(t), fmt.Sprintf("t%03d", t), fmt.Sprintf("Tenant %d", t)); err != nil {
			return err
		}
	}

	end := time.Now().Add(-time.Minute)
	start := end.AddDate(0, 0, -o.days)
	g := &generator{rng: rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15)), start: start,
		step: end.Sub(start) / time.Duration(o.rows), n: o.rows, tenants: o.tenants}
	t1 := time.Now()
	const batch = 50000
	for done := 0; done < o.rows; done += batch {
		n := min(batch, o.rows-done)
		if _, err := pool.CopyFrom(ctx, table, core.Columns, &rowSource{g: g, left: n}); err != nil {
			return fmt.Errorf("copy after %d rows: %w", done, err)
		}
		fmt.Printf("\rloaded %d/%d rows", done+n, o.rows)
	}
	fmt.Printf("\ncopied %d rows in %s\n", o.rows, since(t1))
	t2 := time.Now()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET maintenance_work_mem = '512MB'`); err != nil {
		return err
	}
	for _, ix := range indexes {
		t := time.Now()
		// On a partitioned audit_logs the definition reads CREATE INDEX ... ON ONLY, which would
		// build no index on the partitions (and leave the parent's invalid): build them all.
		if _, err := conn.Exec(ctx, strings.Replace(ix.def, " ON ONLY ", " ON ", 1)); err != nil {
			return fmt.Errorf("%s: %w", ix.name, err)
		}
		fmt.Printf("index %s built in %s\n", ix.name, since(t))
	}
	// The partitions' copies take the names the migrations give them.
	if _, err := conn.Exec(ctx, `SELECT `+pgx.Identifier{name, "audit_name_partition_indexes"}.Sanitize()+`(p.name, 'audit_logs')
		FROM `+pgx.Identifier{name, "audit_partitions"}.Sanitize()+`('audit_logs') p`); err != nil {
		return fmt.Errorf("naming the partitions' indexes: %w", err)
	}
	if _, err := conn.Exec(ctx, `ALTER TABLE `+table.Sanitize()+` ENABLE TRIGGER audit_logs_notify`); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `VACUUM (ANALYZE) `+table.Sanitize()); err != nil {
		return err
	}
	var size string
	if err := conn.QueryRow(ctx, `SELECT pg_size_pretty(pg_total_relation_size($1::regclass))`, table.Sanitize()).Scan(&size); err != nil {
		return err
	}
	fmt.Printf("indexes and VACUUM ANALYZE in %s; schema %s ready in %s, audit_logs %s with indexes\n", since(t2), name, since(t0), size)
	return nil
}
