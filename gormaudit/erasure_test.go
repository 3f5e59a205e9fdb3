package gormaudit_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/gormaudit"
	"github.com/auditkit/auditkit/internal/pgtest"
)

type Member struct {
	ID    uint `gorm:"primaryKey"`
	Email string
	Plan  string
}

// TestInTransactionEncryptsPersonalValues: records written in the application's transaction store
// personal values encrypted, as the writer's own do, so that erasing the subject covers them.
func TestInTransactionEncryptsPersonalValues(t *testing.T) {
	pg := pgtest.New(t)
	key := make([]byte, core.MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	cfg := core.Config{DatabaseURL: pg.URL, Schema: pg.Schema, FlushInterval: time.Millisecond,
		Erasure: core.ErasureConfig{MasterKey: base64.StdEncoding.EncodeToString(key), PersonalFields: []string{"email"}}}
	ctx := context.Background()
	w, err := core.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	db, err := gorm.Open(postgres.Open(pg.URL), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gormaudit.Register(db, gormaudit.Options{Writer: w, InTransaction: true, Schema: pg.Schema}); err != nil {
		t.Fatal(err)
	}
	if err := db.AutoMigrate(&Member{}); err != nil {
		t.Fatal(err)
	}
	actx := core.WithActor(ctx, core.Actor{ID: "u1", Email: "ada@example.com"})
	if err := db.WithContext(actx).Create(&Member{Email: "grace@example.com", Plan: "free"}).Error; err != nil {
		t.Fatal(err)
	}
	var dump string
	var chained bool
	if err := pg.Pool.QueryRow(ctx, `SELECT string_agg(t::text, ' '), bool_and(seq IS NOT NULL) FROM audit_logs t`).Scan(&dump, &chained); err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"ada@example.com", "grace@example.com"} {
		if strings.Contains(dump, plain) {
			t.Errorf("%s is stored in the clear: %s", plain, dump)
		}
	}
	if !strings.Contains(dump, core.EncryptedPrefix) || !chained {
		t.Errorf("want encrypted values in chained records: chained=%v %s", chained, dump)
	}
}
