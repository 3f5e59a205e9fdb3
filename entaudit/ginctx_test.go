package entaudit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
)

// TestGinContext: a handler that gives ent the *gin.Context itself (Save(c), client.Tx(c)) has
// its changes recorded exactly like one that gives c.Request.Context(): with the request's id,
// actor and tenant, and a rolled-back transaction leaves no record. A route outside the
// audit middleware, given its *gin.Context, is recorded by the Writer without identity, as before.
func TestGinContext(t *testing.T) {
	gin.SetMode(gin.TestMode)
	e := newEnv(t)
	ctxs := map[string]func(c *gin.Context) context.Context{
		"request": func(c *gin.Context) context.Context { return c.Request.Context() },
		"gin":     func(c *gin.Context) context.Context { return c },
	}
	bareCtx := ctxs["gin"]
	if ginContextRaces {
		t.Log("under the race detector, only c.Request.Context() (see ginctx_race_test.go)")
		delete(ctxs, "gin")
		bareCtx = ctxs["request"]
	}
	r := gin.New()
	r.POST("/bare", func(c *gin.Context) { // registered before the middleware
		if _, err := e.client.User.Create().SetName("bare").SetEmail("bare@x").Save(bareCtx(c)); err != nil {
			c.String(500, err.Error())
			return
		}
		c.String(201, "ok")
	})
	r.Use(func(c *gin.Context) { // the application's own authentication
		ctx := core.WithActor(c.Request.Context(), core.Actor{ID: "u-7", Type: core.ActorTenantUser})
		c.Request = c.Request.WithContext(core.WithTenant(ctx, core.Tenant{ID: "t-42"}))
	}, ginaudit.Middleware(ginaudit.Options{Writer: e.w, Logger: slog.New(slog.DiscardHandler)}))
	for name, ctxOf := range ctxs {
		r.POST("/"+name+"/create", func(c *gin.Context) {
			if _, err := e.client.User.Create().SetName(name).SetEmail(name + "@x").Save(ctxOf(c)); err != nil {
				c.String(500, err.Error())
				return
			}
			c.String(201, "ok")
		})
		r.POST("/"+name+"/tx", func(c *gin.Context) {
			ctx := ctxOf(c)
			tx, err := e.client.Tx(ctx)
			if err != nil {
				c.String(500, err.Error())
				return
			}
			u, err := tx.User.Query().Where().First(ctx)
			if err == nil {
				_, err = tx.User.UpdateOne(u).SetAge(u.Age + 1).Save(ctx)
			}
			if err == nil && c.Query("rollback") != "" {
				err = errors.New("rolled back")
			}
			if err != nil {
				_ = tx.Rollback()
				c.String(http.StatusConflict, err.Error())
				return
			}
			if err := tx.Commit(); err != nil {
				c.String(500, err.Error())
				return
			}
			c.String(200, "ok")
		})
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	post := func(path, id string) int {
		req, err := http.NewRequest("POST", srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if id != "" {
			req.Header.Set("X-Request-ID", id)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	for name := range ctxs {
		for _, step := range []struct {
			path string
			code int
		}{{"/create", 201}, {"/tx", 200}, {"/tx?rollback=1", 409}} {
			if got := post("/"+name+step.path, fmt.Sprintf("%s-%d", name, step.code)); got != step.code {
				t.Fatalf("%s%s: status %d, want %d", name, step.path, got, step.code)
			}
		}
	}
	if got := post("/bare", ""); got != 201 {
		t.Fatalf("/bare: status %d", got)
	}

	got := map[string][]string{}
	for _, row := range e.audit(t) {
		got[row.RequestID] = append(got[row.RequestID], row.Kind+":"+row.ActorID+":"+row.TenantID)
	}
	for name := range ctxs {
		for id, want := range map[string][]string{
			name + "-201": {"http:u-7:t-42", "insert:u-7:t-42"},
			name + "-200": {"http:u-7:t-42", "update:u-7:t-42"},
			name + "-409": {"http:u-7:t-42"},
		} {
			if fmt.Sprint(got[id]) != fmt.Sprint(want) {
				t.Errorf("request %s: records %v, want %v", id, got[id], want)
			}
		}
	}
	if want := []string{"insert::"}; fmt.Sprint(got[""]) != fmt.Sprint(want) {
		t.Errorf("route outside the middleware: records %v, want %v", got[""], want)
	}
}
