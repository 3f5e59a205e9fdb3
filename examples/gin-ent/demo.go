package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var jsonUnmarshal = json.Unmarshal

// user is someone the example signs tokens for.
type user struct{ ID, Email, Tenant string }

var (
	alice = user{ID: "alice", Email: "alice@acme.example", Tenant: "acme"}
	bob   = user{ID: "bob", Email: "bob@globex.example", Tenant: "globex"}
)

// token signs a token for u with secret, valid for a day.
func token(secret string, u user) string {
	now := time.Now()
	t, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": u.ID, "email": u.Email, "tenant_id": u.Tenant, "actor_type": "tenant_user",
		"iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		panic(err) // HS256 signing with a []byte key cannot fail
	}
	return t
}

func printCurl(out io.Writer, secret, base string) {
	a, b := token(secret, alice), token(secret, bob)
	fmt.Fprintf(out, `gin-ent is serving on %[1]s. Try, as alice (tenant acme) and bob (tenant globex):

  A=%[2]s
  B=%[3]s

  curl -s -X POST %[1]s/customers -H "Authorization: Bearer $A" -d '{"name":"Initech","email":"it@initech.example","credit":100,"api_secret":"s3cr3t"}'
  curl -s -X PATCH %[1]s/customers/1 -H "Authorization: Bearer $A" -d '{"tier":"gold","add_credit":5}'
  curl -s -X POST %[1]s/customers/1/orders -H "Authorization: Bearer $A" -d '{"amount":40}'
  curl -s -X POST %[1]s/transfers -H "Authorization: Bearer $A" -d '{"from":1,"to":2,"amount":1000}'
  curl -s -X DELETE %[1]s/customers/1 -H "Authorization: Bearer $B"
  curl -s %[1]s/audit -H "Authorization: Bearer $A"

Every request is recorded in audit_logs, together with the rows it changed. Stop with Ctrl-C.
`, base, a, b)
}

// client makes the demo's requests.
type client struct {
	base string
	http *http.Client
}

type response struct {
	Status    int
	RequestID string
	Body      map[string]any
}

func (c *client) do(ctx context.Context, method, path, bearer string, body any) (response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return response{}, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	out := response{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-ID")}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return out, err
	}
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &out.Body); err != nil {
			return out, err
		}
	}
	return out, nil
}

// step is one request of the scenario.
type step struct {
	what         string
	method, path string
	bearer       string
	body         any
	want         int
}

// scenario runs the demo's requests and returns their responses, by step.
func scenario(ctx context.Context, base, secret string) ([]response, error) {
	c := &client{base: base, http: &http.Client{Timeout: 10 * time.Second}}
	a, b := token(secret, alice), token(secret, bob)
	forged := token("a-secret-that-is-not-the-servers-0123456789", alice)
	run := strconv.FormatInt(time.Now().UnixNano(), 36) // emails are unique per tenant: one set per run
	var out []response
	var ids []int
	id := func(i int) string { return fmt.Sprint(ids[i]) }
	steps := []func() step{
		func() step {
			return step{"alice creates a customer", "POST", "/customers", a, map[string]any{"name": "Initech", "email": "it-" + run + "@initech.example", "credit": 100, "api_secret": "s3cr3t"}, 201}
		},
		func() step {
			return step{"alice creates another", "POST", "/customers", a, map[string]any{"name": "Hooli", "email": "hi-" + run + "@hooli.example", "credit": 20}, 201}
		},
		func() step {
			return step{"bob creates one in his tenant", "POST", "/customers", b, map[string]any{"name": "Umbrella", "email": "u-" + run + "@umbrella.example"}, 201}
		},
		func() step {
			return step{"alice upgrades Initech", "PATCH", "/customers/" + id(0), a, map[string]any{"tier": "gold", "add_credit": 5}, 200}
		},
		func() step {
			return step{"alice moves too much credit (rolled back)", "POST", "/transfers", a, map[string]any{"from": ids[1], "to": ids[0], "amount": 1000}, 409}
		},
		func() step {
			return step{"alice moves some credit", "POST", "/transfers", a, map[string]any{"from": ids[0], "to": ids[1], "amount": 30}, 200}
		},
		func() step {
			return step{"alice places an order", "POST", "/customers/" + id(0) + "/orders", a, map[string]any{"amount": 40}, 201}
		},
		func() step {
			return step{"bob tries to delete alice's customer", "DELETE", "/customers/" + id(0), b, nil, 404}
		},
		func() step {
			return step{"a forged token", "DELETE", "/customers/" + id(1), forged, nil, 401}
		},
		func() step { return step{"alice deletes Hooli", "DELETE", "/customers/" + id(1), a, nil, 204} },
	}
	for _, f := range steps {
		s := f()
		r, err := c.do(ctx, s.method, s.path, s.bearer, s.body)
		if err != nil {
			return out, fmt.Errorf("%s: %w", s.what, err)
		}
		if r.Status != s.want {
			return out, fmt.Errorf("%s: status %d, want %d (%v)", s.what, r.Status, s.want, r.Body)
		}
		if s.method == "POST" && s.path == "/customers" {
			v, _ := r.Body["id"].(float64)
			ids = append(ids, int(v))
		}
		out = append(out, r)
	}
	return out, nil
}

func runDemo(ctx context.Context, out io.Writer, a *app, base string) error {
	start := time.Now()
	if _, err := scenario(ctx, base, a.cfg.JWT.Secret); err != nil {
		return err
	}
	if err := a.writer.Flush(ctx); err != nil {
		return err
	}
	rows, err := a.trail(ctx, "", 100)
	if err != nil {
		return err
	}
	rows = slices.DeleteFunc(rows, func(r auditRow) bool { return r.OccurredAt.Before(start) }) // earlier runs
	slices.Reverse(rows)
	fmt.Fprintf(out, "The audit trail of the scenario (schema %s, table audit_logs):\n\n", a.cfg.Schema)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tREQUEST\tACTOR\tTENANT\tKIND\tWHAT\tDETAIL")
	for _, r := range rows {
		actor := r.ActorID
		if actor == "" {
			actor = "(anonymous)"
		}
		req := r.RequestID
		if len(req) > 8 {
			req = req[len(req)-8:]
		}
		what, detail := r.Action, ""
		switch r.Kind {
		case "http":
			what = r.Method + " " + r.Route
			detail = fmt.Sprint(r.Status)
			if r.Severity != "info" {
				detail += " " + r.Severity
			}
		default:
			what = r.Action + " " + r.ResourceID
			detail = summarize(r.Diff)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.OccurredAt.Local().Format("15:04:05.000"), req, actor, r.TenantID, r.Kind, what, detail)
	}
	return tw.Flush()
}

// summarize renders a diff as "field: from → to" pairs.
func summarize(d map[string]any) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		ch, _ := d[k].(map[string]any)
		parts = append(parts, fmt.Sprintf("%s: %v → %v", k, show(ch["from"]), show(ch["to"])))
	}
	s := strings.Join(parts, ", ")
	if len(s) > 90 {
		s = s[:87] + "..."
	}
	return s
}

func show(v any) string {
	if v == nil {
		return "∅"
	}
	return fmt.Sprint(v)
}
