package ginaudit_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/internal/plant"
)

// TestBodySecretsOverHTTP sends bodies of every shape carrying planted secrets through the
// middleware over real HTTP, with every kind of declared content type (right, with a charset,
// missing, wrong), under a cap that keeps them whole and under one that truncates them; the
// handler echoes each body as its response. No piece of a planted secret may reach a stored row.
func TestBodySecretsOverHTTP(t *testing.T) {
	echo := func(c *gin.Context) {
		b, err := io.ReadAll(c.Request.Body)
		if err != nil {
			c.String(400, err.Error())
			return
		}
		c.Data(200, c.ContentType(), b)
	}
	for _, limit := range []int{1 << 20, 200} {
		t.Run(fmt.Sprint("cap=", limit), func(t *testing.T) {
			h := newHarness(t, ginaudit.Options{Config: captureConfig(limit)}, func(r *gin.Engine, _ *core.Writer) {
				r.POST("/echo", echo)
			})
			const tag = "h"
			type sent struct {
				id, what string
				secrets  map[string]string
			}
			var all []sent
			for _, sh := range plant.Shapes {
				data := sh.Render(tag, "plain note: nothing secret here", false)
				for _, ct := range plant.ContentTypes(sh.ContentType) {
					id := fmt.Sprintf("%s-%d-%d", sh.Name, len(all), limit)
					hdr := []string{"X-Request-ID", id}
					if ct != "" {
						hdr = append(hdr, "Content-Type", ct)
					}
					resp, got := h.do("POST", "/echo", strings.NewReader(data), hdr...)
					if resp.StatusCode != 200 || got != data {
						t.Fatalf("%s as %q: echo answered %d with %d bytes", sh.Name, ct, resp.StatusCode, len(got))
					}
					all = append(all, sent{id, fmt.Sprintf("%s as %q", sh.Name, ct), plant.Secrets(sh.Name, tag)})
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := h.w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			stored := map[string]string{}
			rows, err := h.db.Pool.Query(ctx, `SELECT request_id, row_to_json(a)::text FROM audit_logs a`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id, js string
				if err := rows.Scan(&id, &js); err != nil {
					t.Fatal(err)
				}
				stored[id] += js
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			for _, s := range all {
				row, ok := stored[s.id]
				if !ok {
					t.Errorf("%s: no record", s.what)
					continue
				}
				if !strings.Contains(row, `"request_body":{`) || !strings.Contains(row, `"response_body":{`) && !strings.Contains(row, `"response_body":[`) {
					t.Errorf("%s: bodies not stored: %s", s.what, row)
				}
				if leaks := plant.Leaks(row, s.secrets); len(leaks) > 0 {
					t.Errorf("%s: leaked %s\nrow: %s", s.what, strings.Join(leaks, ", "), row)
				}
			}
		})
	}
}
