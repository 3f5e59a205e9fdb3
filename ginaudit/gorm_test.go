package ginaudit_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/gormaudit"
)

type account struct {
	ID      uint `gorm:"primaryKey"`
	Owner   string
	Balance int64
}

var errInsufficient = errors.New("insufficient funds")

// TestGORMChangesJoinTheRequest: a handler writing through GORM with c.Request.Context() gets its
// committed changes recorded with the request's id, actor, tenant and IP; a rolled-back
// transaction leaves only the http record.
func TestGORMChangesJoinTheRequest(t *testing.T) {
	var db *gorm.DB
	h := newHarnessWith(t, func(w *core.Writer) *gin.Engine {
		r := gin.New()
		r.Use(gin.Recovery(), ginaudit.Middleware(ginaudit.Options{Writer: w, Config: hsConfig(), Logger: discardLogger()}))
		r.POST("/accounts", func(c *gin.Context) {
			a := account{Owner: c.Query("owner"), Balance: 100}
			if err := db.WithContext(c.Request.Context()).Create(&a).Error; err != nil {
				c.String(500, err.Error())
				return
			}
			c.JSON(201, a)
		})
		r.POST("/transfer", func(c *gin.Context) {
			amount := int64(60)
			err := db.WithContext(c.Request.Context()).Transaction(func(tx *gorm.DB) error {
				if err := tx.Model(&account{}).Where("id = ?", 1).Update("balance", gorm.Expr("balance - ?", amount)).Error; err != nil {
					return err
				}
				if err := tx.Model(&account{}).Where("id = ?", 2).Update("balance", gorm.Expr("balance + ?", amount)).Error; err != nil {
					return err
				}
				var from account
				if err := tx.First(&from, 1).Error; err != nil {
					return err
				}
				if from.Balance < 0 {
					return errInsufficient
				}
				return nil
			})
			if errors.Is(err, errInsufficient) {
				_ = c.Error(err)
				c.String(http.StatusConflict, "insufficient funds")
				return
			}
			if err != nil {
				c.String(500, err.Error())
				return
			}
			c.String(200, "moved")
		})
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
	if _, err := gormaudit.Register(db, gormaudit.Options{Writer: h.w}); err != nil {
		t.Fatal(err)
	}
	if err := db.AutoMigrate(&account{}); err != nil {
		t.Fatal(err)
	}

	auth := bearer(tenantToken(t, "teller-1", "bank-1"))
	h.do("POST", "/accounts?owner=ada", nil, "Authorization", auth, "X-Request-ID", "req-create-1")
	h.do("POST", "/accounts?owner=bob", nil, "Authorization", auth, "X-Request-ID", "req-create-2")
	resp, _ := h.do("POST", "/transfer", nil, "Authorization", auth, "X-Request-ID", "req-transfer-ok")
	if resp.StatusCode != 200 {
		t.Fatalf("first transfer: %d", resp.StatusCode)
	}
	resp, _ = h.do("POST", "/transfer", nil, "Authorization", auth, "X-Request-ID", "req-transfer-rollback")
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("second transfer: %d", resp.StatusCode)
	}

	rows := h.rows()
	byReq := map[string][]row{}
	for _, r := range rows {
		byReq[r.RequestID] = append(byReq[r.RequestID], r)
	}
	summary := func(id string) string {
		var s []string
		for _, r := range byReq[id] {
			s = append(s, r.Kind+":"+r.ResourceType+":"+r.ResourceID)
		}
		return strings.Join(s, ",")
	}
	for id, want := range map[string]string{
		"req-create-1":          "http::,insert:accounts:1",
		"req-create-2":          "http::,insert:accounts:2",
		"req-transfer-ok":       "http::,update:accounts:1,update:accounts:2",
		"req-transfer-rollback": "http::",
	} {
		if got := summary(id); got != want {
			t.Errorf("%s: rows %s, want %s", id, got, want)
		}
	}
	for _, r := range rows {
		if r.ActorID != "teller-1" || r.ActorType != "tenant_user" || r.TenantID != "bank-1" || r.IP != "127.0.0.1" {
			t.Errorf("%s %s: actor %s/%s tenant %s ip %s", r.RequestID, r.Kind, r.ActorID, r.ActorType, r.TenantID, r.IP)
		}
	}
	for _, r := range byReq["req-transfer-ok"] {
		if r.Kind == "update" && r.ResourceID == "1" {
			if b := r.Diff["balance"]; b["from"] != float64(100) || b["to"] != float64(40) {
				t.Errorf("transfer diff %v", r.Diff)
			}
		}
	}
	rb := byReq["req-transfer-rollback"][0]
	if rb.Status != http.StatusConflict || rb.Metadata["errors"] == nil {
		t.Errorf("rolled-back request recorded as %d %v", rb.Status, rb.Metadata)
	}
}
