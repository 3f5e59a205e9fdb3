package shop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// demoStep is one scripted request.
type demoStep struct {
	what   string
	method string
	path   string
	token  string
	body   string
	want   int
}

// runDemo plays the scenario against the server at base, over real HTTP, with userAgent as the
// requests' User-Agent, and prints the audit trail it left.
func runDemo(ctx context.Context, a *App, userAgent, base string, out io.Writer) error {
	idb := make([]byte, 3)
	_, _ = rand.Read(idb)
	run := "demo-" + hex.EncodeToString(idb)
	alice := a.Token("alice", "alice@acme.example", "acme", "acme", time.Hour)
	bob := a.Token("bob", "bob@globex.example", "globex", "globex", time.Hour)
	forged := signToken(strings.Repeat("f", 32), a.Cfg.Audience, "mallory", "mallory@evil.example", "acme", "acme", time.Hour)
	client := &http.Client{Timeout: 10 * time.Second}

	fmt.Fprintf(out, "Scenario %s against %s (schema %s)\n\n", run, base, a.Cfg.Schema)
	n := 0
	do := func(s demoStep) (map[string]any, error) {
		n++
		req, err := http.NewRequestWithContext(ctx, s.method, base+s.path, strings.NewReader(s.body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+s.token)
		req.Header.Set("X-Request-ID", fmt.Sprintf("%s-%02d", run, n))
		req.Header.Set("User-Agent", userAgent)
		if s.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(out, "  %02d  %d  %-7s %-22s %s\n", n, resp.StatusCode, s.method, s.path, s.what)
		if resp.StatusCode != s.want {
			return nil, fmt.Errorf("%s: status %d, want %d: %s", s.what, resp.StatusCode, s.want, compact(raw))
		}
		var v map[string]any
		_ = json.Unmarshal(raw, &v)
		return v, nil
	}
	idOf := func(v map[string]any) string { return fmt.Sprint(v["id"]) }

	ada, err := do(demoStep{"alice@acme creates customer Ada", "POST", "/customers", alice,
		`{"name":"Ada","email":"ada@example.com","tax_id":"DE-123-456","credit_cents":10000}`, 201})
	if err != nil {
		return err
	}
	brian, err := do(demoStep{"alice@acme creates customer Brian", "POST", "/customers", alice,
		`{"name":"Brian","email":"brian@example.com","credit_cents":2000}`, 201})
	if err != nil {
		return err
	}
	steps := []demoStep{
		{"alice@acme changes Ada's email and tax id", "PATCH", "/customers/" + idOf(ada), alice,
			`{"email":"ada@lovelace.example","tax_id":"DE-999-000"}`, 200},
		{"alice@acme orders for Ada", "POST", "/customers/" + idOf(ada) + "/orders", alice,
			`{"item":"analytical engine","amount_cents":4200}`, 201},
		{"alice@acme moves 50.00 from Ada to Brian", "POST", "/transfers", alice,
			fmt.Sprintf(`{"from":%s,"to":%s,"amount_cents":5000}`, idOf(ada), idOf(brian)), 200},
		{"alice@acme tries to move 999.99 from Brian: rolled back", "POST", "/transfers", alice,
			fmt.Sprintf(`{"from":%s,"to":%s,"amount_cents":99999}`, idOf(brian), idOf(ada)), 409},
		{"bob@globex creates customer Grace", "POST", "/customers", bob,
			`{"name":"Grace","email":"grace@globex.example","credit_cents":500}`, 201},
		{"bob@globex tries to rename acme's Ada: not his tenant", "PATCH", "/customers/" + idOf(ada), bob,
			`{"name":"taken over"}`, 404},
		{"a forged token claiming to be an acme user", "PATCH", "/customers/" + idOf(ada), forged,
			`{"credit_cents":1000000}`, 401},
	}
	for _, s := range steps {
		if _, err := do(s); err != nil {
			return err
		}
	}

	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.Writer.Flush(fctx); err != nil {
		return err
	}
	rows, err := a.trail(fctx, run+"-%")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nAudit trail (%d rows in %s.audit_logs):\n\n", len(rows), a.Cfg.Schema)
	printTrail(out, rows)
	return nil
}

// trailRow is one audit_logs row as the demo prints it.
type trailRow struct {
	at                                 time.Time
	requestID, kind, action, severity  string
	actor, actorType, tenant, method   string
	route, resourceType, resourceID    string
	status                             *int
	diff, after, metadata, requestBody map[string]any
}

// trail reads the rows whose request id matches pattern (a LIKE pattern).
func (a *App) trail(ctx context.Context, pattern string) ([]trailRow, error) {
	rs, err := a.Pool.Query(ctx, `SELECT occurred_at, request_id, kind::text, action, severity::text,
		coalesce(actor_id, ''), actor_type::text, coalesce(tenant_id, ''), coalesce(method, ''),
		coalesce(route, ''), coalesce(resource_type, ''), coalesce(resource_id, ''), status,
		diff, after, metadata, request_body
		FROM audit_logs WHERE request_id LIKE $1 ORDER BY request_id, (kind <> 'http'), occurred_at, id`, pattern)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []trailRow
	for rs.Next() {
		var r trailRow
		if err := rs.Scan(&r.at, &r.requestID, &r.kind, &r.action, &r.severity, &r.actor, &r.actorType,
			&r.tenant, &r.method, &r.route, &r.resourceType, &r.resourceID, &r.status,
			&r.diff, &r.after, &r.metadata, &r.requestBody); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

func printTrail(out io.Writer, rows []trailRow) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tREQUEST\tKIND\tWHAT\tACTOR\tTENANT\tSTATUS\tSEVERITY\tDETAIL")
	for _, r := range rows {
		actor := r.actor
		if actor == "" {
			actor = "(" + r.actorType + ")"
		}
		what, detail := r.action, ""
		status := ""
		if r.status != nil {
			status = fmt.Sprint(*r.status)
		}
		if r.kind == "http" {
			what = r.route // a ServeMux pattern names the method ("POST /customers"), a Gin route does not
			if !strings.HasPrefix(r.route, r.method+" ") {
				what = r.method + " " + r.route
			}
			detail = httpDetail(r)
		} else {
			what = r.resourceType + "#" + r.resourceID
			detail = changeDetail(r)
		}
		short := r.requestID
		if i := strings.LastIndexByte(short, '-'); i >= 0 {
			short = "…" + short[i:]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.at.Local().Format("15:04:05.000"), short,
			r.kind, what, actor, r.tenant, status, r.severity, detail)
	}
	tw.Flush()
}

func httpDetail(r trailRow) string {
	var parts []string
	if v, ok := r.metadata["auth_failure"]; ok {
		parts = append(parts, fmt.Sprintf("token refused (%v)", v))
	}
	if v, ok := r.metadata["errors"].([]any); ok {
		for _, e := range v {
			parts = append(parts, fmt.Sprint("error: ", e))
		}
	}
	if len(r.requestBody) > 0 {
		b, _ := json.Marshal(r.requestBody)
		parts = append(parts, "body "+string(b))
	}
	return strings.Join(parts, "; ")
}

func changeDetail(r trailRow) string {
	var parts []string
	if r.kind == "insert" {
		for _, k := range sortedKeys(r.after) {
			if k == "id" || k == "tenant_id" || k == "created_at" || k == "updated_at" {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s=%v", k, r.after[k]))
		}
		return strings.Join(parts, " ")
	}
	for _, k := range sortedKeys(r.diff) {
		if k == "updated_at" {
			continue
		}
		ch, _ := r.diff[k].(map[string]any)
		parts = append(parts, fmt.Sprintf("%s: %v → %v", k, ch["from"], ch["to"]))
	}
	return strings.Join(parts, "; ")
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// compact renders v as one-line JSON, for error messages.
func compact(raw []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}
