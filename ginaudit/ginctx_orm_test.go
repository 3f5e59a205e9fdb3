package ginaudit_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/gormaudit"
)

// TestGORMWithGinContext: a handler that gives GORM the *gin.Context itself (db.WithContext(c))
// has its changes recorded exactly like one that gives c.Request.Context(): joined to the
// request's collector, with its request id, actor, tenant and IP, and a rolled-back transaction
// leaves no record. A route outside the middleware, given its *gin.Context, is recorded directly
// by the Writer, anonymous, as before.
func TestGORMWithGinContext(t *testing.T) {
	var db *gorm.DB
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
	h := newHarnessWith(t, func(w *core.Writer) *gin.Engine {
		r := gin.New()
		r.POST("/bare", func(c *gin.Context) { // registered before the middleware: not audited as HTTP
			if err := db.WithContext(bareCtx(c)).Create(&account{Owner: "bare"}).Error; err != nil {
				c.String(500, err.Error())
				return
			}
			c.String(201, "ok")
		})
		r.Use(gin.Recovery(), ginaudit.Middleware(ginaudit.Options{Writer: w, Config: hsConfig(), Logger: discardLogger()}))
		for name, ctxOf := range ctxs {
			r.POST("/"+name+"/create", func(c *gin.Context) {
				if err := db.WithContext(ctxOf(c)).Create(&account{Owner: name, Balance: 100}).Error; err != nil {
					c.String(500, err.Error())
					return
				}
				c.String(201, "ok")
			})
			r.POST("/"+name+"/tx", func(c *gin.Context) {
				err := db.WithContext(ctxOf(c)).Transaction(func(tx *gorm.DB) error {
					if err := tx.Model(&account{}).Where("owner = ?", name).Update("balance", 50).Error; err != nil {
						return err
					}
					if c.Query("rollback") != "" {
						return errInsufficient
					}
					return nil
				})
				if err != nil {
					c.String(http.StatusConflict, err.Error())
					return
				}
				c.String(200, "ok")
			})
		}
		return r
	})
	var err error
	db, err = gorm.Open(postgres.Open(h.db.URL), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := db.DB(); err == nil {
		t.Cleanup(func() { _ = sqlDB.Close() })
	}
	if _, err := gormaudit.Register(db, gormaudit.Options{Writer: h.w, Logger: discardLogger()}); err != nil {
		t.Fatal(err)
	}
	if err := db.AutoMigrate(&account{}); err != nil {
		t.Fatal(err)
	}

	auth := bearer(tenantToken(t, "teller-1", "bank-1"))
	for name := range ctxs {
		for _, step := range []struct{ path, status string }{
			{"/create", "201"}, {"/tx", "200"}, {"/tx?rollback=1", "409"},
		} {
			id := fmt.Sprintf("%s-%s", name, step.status)
			resp, body := h.do("POST", "/"+name+step.path, nil, "Authorization", auth, "X-Request-ID", id)
			if fmt.Sprint(resp.StatusCode) != step.status {
				t.Fatalf("%s%s: %d %s", name, step.path, resp.StatusCode, body)
			}
		}
	}
	if resp, body := h.do("POST", "/bare", nil, "Authorization", auth); resp.StatusCode != 201 {
		t.Fatalf("/bare: %d %s", resp.StatusCode, body)
	}

	rows := h.rows()
	got := map[string][]string{}
	for _, r := range rows {
		got[r.RequestID] = append(got[r.RequestID], r.Kind+":"+r.ActorID+":"+r.TenantID+":"+r.IP)
	}
	httpRow := "http:teller-1:bank-1:127.0.0.1"
	for name := range ctxs {
		for id, want := range map[string][]string{
			name + "-201": {httpRow, "insert:teller-1:bank-1:127.0.0.1"},
			name + "-200": {httpRow, "update:teller-1:bank-1:127.0.0.1"},
			name + "-409": {httpRow},
		} {
			if fmt.Sprint(got[id]) != fmt.Sprint(want) {
				t.Errorf("request %s: rows %v, want %v", id, got[id], want)
			}
		}
	}
	if want := []string{"insert:::"}; fmt.Sprint(got[""]) != fmt.Sprint(want) {
		t.Errorf("route outside the middleware: rows %v, want %v", got[""], want)
	}
}
