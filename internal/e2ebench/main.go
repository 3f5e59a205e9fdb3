// Command e2ebench is a small Gin + GORM service for measuring auditkit end to end under a load
// generator: GET of one row, POST of a row and PATCH of one column of a row, served without
// auditing (-mode bare) or with ginaudit.Middleware, gormaudit.Register and a core.Writer storing
// the records in PostgreSQL (-mode audited: every request is recorded, anonymous ones too;
// requests with an HS256 bearer token are verified), or audited with a Writer that redacts and
// encodes every record and stores none (-mode unstored: what the application's process and its
// statements pay, without PostgreSQL's work on the audit rows and without the hash chain's links,
// which are made for PostgreSQL's sink only).
// run.sh starts one server per mode and drives them with wrk, interleaved.
//
//	go run ./internal/e2ebench -mode audited -schema e2e_audited -addr 127.0.0.1:18082
//	go run ./internal/e2ebench -token -secret S   # print a token the audited server accepts
//
// The service's table is e2e_items in -schema (created, and seeded with -rows rows, at start);
// the audited service keeps audit_logs in the same schema. -drop-index names audit_logs indexes
// to drop after the migration, to measure what they cost the writes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/gormaudit"
	"github.com/auditkit/auditkit/schema"
)

// Item is the service's one table.
type Item struct {
	ID        uint      `gorm:"primaryKey" json:"id"`
	SKU       string    `gorm:"not null" json:"sku"`
	Name      string    `json:"name"`
	Qty       int       `gorm:"not null;default:0" json:"qty"`
	PriceCts  int64     `gorm:"not null;default:0" json:"price_cents"`
	UpdatedAt time.Time `json:"updated_at"`
}

// TableName keeps the table apart from other programs' tables in a shared schema.
func (Item) TableName() string { return "e2e_items" }

// Token settings of the audited service.
const (
	tokenIssuer   = "auditkit-e2ebench"
	tokenAudience = "e2ebench"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "e2ebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("e2ebench", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:18080", "listen address")
	dbURL := fs.String("db", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL URL")
	schemaName := fs.String("schema", "e2ebench", "schema of the service's table (and of audit_logs when audited)")
	mode := fs.String("mode", "bare", "bare (no auditing), audited, or unstored (audited, the records encoded and discarded)")
	rows := fs.Int("rows", 1000, "rows of e2e_items at start (the table is emptied first)")
	secret := fs.String("secret", "e2ebench-secret-0123456789abcdef0123456789", "HS256 secret, at least 32 bytes")
	token := fs.Bool("token", false, "print a bearer token for -secret, valid for a day, and exit")
	dropIndex := fs.String("drop-index", "", "comma-separated audit_logs indexes to drop after the migration")
	pool := fs.Int("pool", 16, "maximum open database connections of the service")
	fresh := fs.Bool("fresh", false, "drop -schema and everything in it first, so that every run starts from an empty audit_logs")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the service, from start to shutdown, to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *token {
		s, err := signToken(*secret, 24*time.Hour)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, s)
		return err
	}
	if *mode != "bare" && *mode != "audited" && *mode != "unstored" {
		return fmt.Errorf("-mode must be bare, audited or unstored, not %q", *mode)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	gin.SetMode(gin.ReleaseMode)
	svc, err := open(ctx, *dbURL, *schemaName, *mode, *secret, *rows, *pool, *dropIndex, *fresh)
	if err != nil {
		return err
	}
	defer svc.close()
	srv := &http.Server{Addr: *addr, Handler: svc.engine, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Fprintf(stdout, "e2ebench: %s serving on %s (schema %s)\n", *mode, *addr, *schemaName)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// service is the running service.
type service struct {
	db     *gorm.DB
	writer *core.Writer
	engine *gin.Engine
}

func open(ctx context.Context, dbURL, schemaName, mode string, secret string, rows, maxConns int, dropIndex string, fresh bool) (*service, error) {
	dsn, err := withSearchPath(dbURL, schemaName)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if fresh {
		if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+quoteIdent(schemaName)+` CASCADE`); err != nil {
			return nil, err
		}
	}
	if _, err := pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+quoteIdent(schemaName)); err != nil {
		return nil, err
	}
	svc := &service{}
	var cfg core.Config
	audited := mode != "bare"
	if audited {
		if _, err := schema.Migrate(ctx, pool, schema.WithSchema(schemaName)); err != nil {
			return nil, err
		}
		for _, ix := range strings.Split(dropIndex, ",") {
			if ix = strings.TrimSpace(ix); ix != "" {
				if _, err := pool.Exec(ctx, `DROP INDEX IF EXISTS `+quoteIdent(schemaName)+`.`+quoteIdent(ix)); err != nil {
					return nil, err
				}
			}
		}
		cfg = core.Config{
			DatabaseURL: dbURL,
			Schema:      schemaName,
			JWT:         core.JWTConfig{Secret: secret, Issuer: tokenIssuer, Audience: []string{tokenAudience}},
			// Requests without a token are recorded too, so that every request stores its record
			// whether or not wrk sends a token (by default an anonymous GET stores nothing).
			LogAnonymous: true,
		}
		if mode == "unstored" {
			svc.writer = core.NewWriter(discardRows{}, core.WriterOptions{})
		} else if svc.writer, err = core.Open(ctx, cfg); err != nil {
			return nil, err
		}
	}
	svc.db, err = gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		svc.close()
		return nil, err
	}
	if sqlDB, err := svc.db.DB(); err == nil {
		sqlDB.SetMaxOpenConns(maxConns)
		sqlDB.SetMaxIdleConns(maxConns)
	}
	if audited {
		if _, err := gormaudit.Register(svc.db, gormaudit.Options{Writer: svc.writer}); err != nil {
			svc.close()
			return nil, err
		}
	}
	if err := seed(ctx, svc.db, pool, rows); err != nil {
		svc.close()
		return nil, err
	}
	svc.engine = gin.New()
	if audited {
		svc.engine.Use(ginaudit.Middleware(ginaudit.Options{Writer: svc.writer, Config: cfg}))
	}
	svc.engine.GET("/items/:id", svc.get)
	svc.engine.POST("/items", svc.create)
	svc.engine.PATCH("/items/:id", svc.patch)
	return svc, nil
}

// seed creates e2e_items and fills it with rows rows, ids 1..rows, through pool: the seeding
// itself is not audited.
func seed(ctx context.Context, db *gorm.DB, pool *pgxpool.Pool, rows int) error {
	if err := db.WithContext(ctx).AutoMigrate(&Item{}); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `TRUNCATE e2e_items RESTART IDENTITY`); err != nil {
		return err
	}
	_, err := pool.Exec(ctx, `INSERT INTO e2e_items (sku, name, qty, price_cts, updated_at)
SELECT 'sku-' || i, 'item ' || i, 1, 100, now() FROM generate_series(1, $1::int) AS i`, rows)
	return err
}

// discardRows is the unstored mode's sink: it takes the records as encoded rows, as the
// PostgreSQL sink does, so that the Writer redacts and encodes them as it would to store them
// (the hash chain's links apart), and then drops them.
type discardRows struct{}

func (discardRows) Write(context.Context, []*core.Record) error { return nil }
func (discardRows) TakesRows()                                  {}

func (s *service) close() {
	if s.writer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.writer.Close(ctx)
		st := s.writer.Stats()
		fmt.Fprintf(os.Stderr, "e2ebench: the writer's sink took %d records in %d batches (dropped %d, failed %d)\n",
			st.Written, st.Batches, st.Dropped, st.Failed)
	}
	if s.db != nil {
		if sqlDB, err := s.db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	}
}

func (s *service) get(c *gin.Context) {
	id, err := strconv.ParseUint(c.Param("id"), 10, 64)
	if err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": "the id must be a positive number"})
		return
	}
	var it Item
	if err := s.db.WithContext(c.Request.Context()).First(&it, id).Error; err != nil {
		failed(c, err)
		return
	}
	c.JSON(http.StatusOK, it)
}

func (s *service) create(c *gin.Context) {
	var in struct {
		SKU   string `json:"sku" binding:"required"`
		Name  string `json:"name"`
		Qty   int    `json:"qty"`
		Price int64  `json:"price_cents"`
	}
	if err := c.ShouldBindJSON(&in); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	it := Item{SKU: in.SKU, Name: in.Name, Qty: in.Qty, PriceCts: in.Price}
	if err := s.db.WithContext(c.Request.Context()).Create(&it).Error; err != nil {
		failed(c, err)
		return
	}
	c.JSON(http.StatusCreated, it)
}

func (s *service) patch(c *gin.Context) {
	id, err := strconv.ParseUint(c.Param("id"), 10, 64)
	if err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": "the id must be a positive number"})
		return
	}
	var in struct {
		Qty *int `json:"qty" binding:"required"`
	}
	if err := c.ShouldBindJSON(&in); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	res := s.db.WithContext(c.Request.Context()).Model(&Item{ID: uint(id)}).Update("qty", *in.Qty)
	if res.Error != nil {
		failed(c, res.Error)
		return
	}
	if res.RowsAffected == 0 {
		c.JSON(http.StatusNotFound, gin.H{"error": "not found"})
		return
	}
	c.Status(http.StatusNoContent)
}

func failed(c *gin.Context, err error) {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		c.JSON(http.StatusNotFound, gin.H{"error": "not found"})
		return
	}
	_ = c.Error(err)
	c.JSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
}

// signToken signs an HS256 token the audited service accepts.
func signToken(secret string, validFor time.Duration) (string, error) {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": tokenIssuer, "aud": tokenAudience, "sub": "user-1", "email": "user-1@example.com",
		"actor_type": "tenant_user", "tenant_id": "tenant-1",
		"iat": now.Unix(), "exp": now.Add(validFor).Unix(),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}

// withSearchPath returns the URL with search_path set to schemaName, so that the service's
// table lives there.
func withSearchPath(dbURL, schemaName string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", fmt.Errorf("invalid database URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schemaName)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
