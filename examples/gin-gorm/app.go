package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/gormaudit"
	"github.com/auditkit/auditkit/schema"
)

// Customer belongs to one tenant. TaxID is masked in every audit image and diff.
type Customer struct {
	ID          uint      `gorm:"primaryKey" json:"id"`
	TenantID    string    `gorm:"not null;index" json:"-"`
	Name        string    `gorm:"not null" json:"name"`
	Email       string    `json:"email"`
	TaxID       string    `audit:"redact" json:"tax_id,omitempty"`
	CreditCents int64     `gorm:"not null;default:0" json:"credit_cents"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Order is a customer's order.
type Order struct {
	ID          uint      `gorm:"primaryKey" json:"id"`
	TenantID    string    `gorm:"not null;index" json:"-"`
	CustomerID  uint      `gorm:"not null;index" json:"customer_id"`
	Item        string    `gorm:"not null" json:"item"`
	AmountCents int64     `gorm:"not null" json:"amount_cents"`
	Status      string    `gorm:"not null;default:open" json:"status"`
	CreatedAt   time.Time `json:"created_at"`
}

// Token settings: the example signs its own HS256 tokens.
const (
	tokenIssuer   = "auditkit-example"
	tokenAudience = "gin-gorm-example"
)

// config is what the example needs to start.
type config struct {
	DatabaseURL string // PostgreSQL URL or key=value DSN
	Schema      string // holds audit_logs and the example's tables
	Secret      string // HMAC secret for the example's tokens, at least 32 bytes
}

// app is the running example: the database, the audit writer and the Gin engine.
type app struct {
	cfg    config
	audit  core.Config
	db     *gorm.DB
	writer *core.Writer
	engine *gin.Engine
	pool   *pgxpool.Pool // for reading the audit trail back
}

// errUnreachable wraps a failure to reach PostgreSQL at all.
var errUnreachable = errors.New("PostgreSQL is not reachable")

// setup checks that PostgreSQL answers, migrates audit_logs and the example's tables into
// cfg.Schema, opens GORM with gormaudit and the audit writer, and builds the routes.
func setup(ctx context.Context, cfg config) (*app, error) {
	if err := ping(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	dsn, err := withSearchPath(cfg.DatabaseURL, cfg.Schema)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, pool: pool}
	ok := false
	defer func() {
		if !ok {
			a.close(context.WithoutCancel(ctx))
		}
	}()
	if _, err := schema.Migrate(ctx, pool, schema.WithSchema(cfg.Schema)); err != nil {
		return nil, err
	}

	a.audit = core.Config{
		DatabaseURL: cfg.DatabaseURL,
		Schema:      cfg.Schema,
		JWT: core.JWTConfig{
			Secret:   cfg.Secret,
			Issuer:   tokenIssuer,
			Audience: []string{tokenAudience},
		},
		CaptureRequestBody: true,
		// The model's `audit:"redact"` tag masks tax_id in row images; request bodies are
		// redacted by key, so the key is named here too.
		RedactFields:  []string{"tax_id"},
		FlushInterval: 200 * time.Millisecond,
	}
	if a.writer, err = core.Open(ctx, a.audit); err != nil {
		return nil, err
	}
	a.db, err = gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, err
	}
	if _, err := gormaudit.Register(a.db, gormaudit.Options{Writer: a.writer}); err != nil {
		return nil, err
	}
	if err := a.db.WithContext(ctx).AutoMigrate(&Customer{}, &Order{}); err != nil {
		return nil, err
	}
	if a.engine, err = a.routes(); err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

// close drains the audit writer and closes the connections.
func (a *app) close(ctx context.Context) error {
	var errs []error
	if a.writer != nil {
		errs = append(errs, a.writer.Close(ctx))
	}
	if a.db != nil {
		if sqlDB, err := a.db.DB(); err == nil {
			errs = append(errs, sqlDB.Close())
		}
	}
	if a.pool != nil {
		a.pool.Close()
	}
	return errors.Join(errs...)
}

func (a *app) routes() (*gin.Engine, error) {
	r := gin.New()
	// The client IP gin reports must not be taken from a header any client can send.
	if err := ginaudit.TrustProxies(r, a.audit); err != nil {
		return nil, err
	}
	r.Use(gin.Recovery(), ginaudit.Middleware(ginaudit.Options{Writer: a.writer, Config: a.audit}))
	r.GET("/health", func(c *gin.Context) { c.String(http.StatusOK, "ok") }) // not audited by default

	api := r.Group("/", requireUser)
	api.GET("/customers", a.listCustomers)
	api.POST("/customers", a.createCustomer)
	api.PATCH("/customers/:id", a.updateCustomer)
	api.POST("/customers/:id/orders", a.createOrder)
	api.POST("/transfers", a.transfer)
	return r, nil
}

// requireUser lets through requests whose bearer token the audit middleware verified. The
// middleware itself only records; deciding who may call the API is the application's job.
// ActorFromContext's ok is false both without a token and after a refused one;
// AuthenticationFromContext tells the two apart.
func requireUser(c *gin.Context) {
	ctx := c.Request.Context()
	actor, ok := core.ActorFromContext(ctx)
	tenant, _ := core.TenantFromContext(ctx)
	switch {
	case !ok || !strings.HasPrefix(actor.Auth, "jwt:"):
		msg := "a valid bearer token is required"
		if auth := core.AuthenticationFromContext(ctx); auth.Status == core.AuthRefused {
			msg = "the bearer token was refused"
		}
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": msg})
	case tenant.ID == "":
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": "the token names no tenant"})
	}
}

func tenantOf(c *gin.Context) string {
	t, _ := core.TenantFromContext(c.Request.Context())
	return t.ID
}

// dbFor returns GORM bound to the request's context, so that every change joins the request's
// audit record.
func (a *app) dbFor(c *gin.Context) *gorm.DB { return a.db.WithContext(c.Request.Context()) }

func (a *app) listCustomers(c *gin.Context) {
	var list []Customer
	if err := a.dbFor(c).Where("tenant_id = ?", tenantOf(c)).Order("id").Find(&list).Error; err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, list)
}

func (a *app) createCustomer(c *gin.Context) {
	var in struct {
		Name        string `json:"name" binding:"required"`
		Email       string `json:"email"`
		TaxID       string `json:"tax_id"`
		CreditCents int64  `json:"credit_cents"`
	}
	if err := c.ShouldBindJSON(&in); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	cu := Customer{TenantID: tenantOf(c), Name: in.Name, Email: in.Email, TaxID: in.TaxID, CreditCents: in.CreditCents}
	if err := a.dbFor(c).Create(&cu).Error; err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, cu)
}

func (a *app) updateCustomer(c *gin.Context) {
	var in struct {
		Name  *string `json:"name"`
		Email *string `json:"email"`
		TaxID *string `json:"tax_id"`
	}
	if err := c.ShouldBindJSON(&in); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	changes := map[string]any{}
	if in.Name != nil {
		changes["name"] = *in.Name
	}
	if in.Email != nil {
		changes["email"] = *in.Email
	}
	if in.TaxID != nil {
		changes["tax_id"] = *in.TaxID
	}
	res := a.dbFor(c).Model(&Customer{}).Where("tenant_id = ? AND id = ?", tenantOf(c), c.Param("id")).Updates(changes)
	if res.Error != nil {
		fail(c, res.Error)
		return
	}
	if res.RowsAffected == 0 {
		c.JSON(http.StatusNotFound, gin.H{"error": "no such customer"})
		return
	}
	var cu Customer
	a.dbFor(c).First(&cu, c.Param("id"))
	c.JSON(http.StatusOK, cu)
}

func (a *app) createOrder(c *gin.Context) {
	var in struct {
		Item        string `json:"item" binding:"required"`
		AmountCents int64  `json:"amount_cents"`
	}
	if err := c.ShouldBindJSON(&in); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	var cu Customer
	if err := a.dbFor(c).Where("tenant_id = ? AND id = ?", tenantOf(c), c.Param("id")).First(&cu).Error; err != nil {
		fail(c, err)
		return
	}
	o := Order{TenantID: cu.TenantID, CustomerID: cu.ID, Item: in.Item, AmountCents: in.AmountCents}
	if err := a.dbFor(c).Create(&o).Error; err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, o)
}

var errInsufficientCredit = errors.New("insufficient credit")

// transfer moves credit between two customers in one transaction. It debits first and checks
// afterwards, so that a failed transfer really rolls back changes: their audit records vanish
// with them.
func (a *app) transfer(c *gin.Context) {
	var in struct {
		From        uint  `json:"from" binding:"required"`
		To          uint  `json:"to" binding:"required"`
		AmountCents int64 `json:"amount_cents" binding:"required,gt=0"`
	}
	if err := c.ShouldBindJSON(&in); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	tenant := tenantOf(c)
	err := a.dbFor(c).Transaction(func(tx *gorm.DB) error {
		for _, step := range []struct {
			id    uint
			delta int64
		}{{in.From, -in.AmountCents}, {in.To, in.AmountCents}} {
			res := tx.Model(&Customer{}).Where("tenant_id = ? AND id = ?", tenant, step.id).
				Update("credit_cents", gorm.Expr("credit_cents + ?", step.delta))
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				return gorm.ErrRecordNotFound
			}
		}
		var from Customer
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).First(&from, in.From).Error; err != nil {
			return err
		}
		if from.CreditCents < 0 {
			return errInsufficientCredit
		}
		return nil
	})
	switch {
	case errors.Is(err, errInsufficientCredit):
		_ = c.Error(err)
		c.JSON(http.StatusConflict, gin.H{"error": "insufficient credit; nothing was moved"})
	case errors.Is(err, gorm.ErrRecordNotFound):
		c.JSON(http.StatusNotFound, gin.H{"error": "no such customer"})
	case err != nil:
		fail(c, err)
	default:
		c.JSON(http.StatusOK, gin.H{"moved_cents": in.AmountCents})
	}
}

func fail(c *gin.Context, err error) {
	_ = c.Error(err)
	if errors.Is(err, gorm.ErrRecordNotFound) {
		c.JSON(http.StatusNotFound, gin.H{"error": "not found"})
		return
	}
	c.JSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
}

// token signs a token for a user of a tenant, valid for validFor.
func (a *app) token(sub, email, tenantID, tenantSlug string, validFor time.Duration) string {
	return signToken(a.cfg.Secret, sub, email, tenantID, tenantSlug, validFor)
}

func signToken(secret, sub, email, tenantID, tenantSlug string, validFor time.Duration) string {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": tokenIssuer, "aud": tokenAudience, "sub": sub, "email": email,
		"actor_type": "tenant_user", "tenant_id": tenantID, "tenant_slug": tenantSlug,
		"iat": now.Unix(), "exp": now.Add(validFor).Unix(), "jti": fmt.Sprintf("%s-%d", sub, now.UnixNano()),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		panic(err) // HS256 with a []byte key cannot fail
	}
	return s
}

// ping connects once, briefly, to tell "PostgreSQL is not there" apart from every other problem.
// Only a failure to reach the server (refused, timed out, unknown host) is errUnreachable; a
// server that answered and refused (a missing database, a wrong password) says so with its fix.
func ping(ctx context.Context, databaseURL string) error {
	pc, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("invalid database URL: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err == nil {
		return conn.Close(ctx)
	}
	where := fmt.Sprintf("%s:%d", pc.Host, pc.Port)
	// The server's own answer comes first: with several addresses for one host (localhost), one
	// may be refused while another answers.
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "3D000": // invalid_catalog_name
			return fmt.Errorf("database %q does not exist on the PostgreSQL at %s; create it with: createdb -h %s -p %d -U %s %s (or name another database with -db)",
				pc.Database, where, pc.Host, pc.Port, pc.User, pc.Database)
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return fmt.Errorf("the PostgreSQL at %s refused user %q: %s; fix the user or password in -db (AUDIT_DATABASE_URL), or the server's pg_hba.conf",
				where, pc.User, pgErr.Message)
		}
		return fmt.Errorf("the PostgreSQL at %s refused the connection: %s (SQLSTATE %s)", where, pgErr.Message, pgErr.Code)
	}
	if dialFailed(err) {
		return fmt.Errorf("%w at %s (%s); %s", errUnreachable, where, shortReason(err), reachHint(pc.Host, err))
	}
	return fmt.Errorf("cannot connect to the PostgreSQL at %s: %s", where, shortReason(err))
}

// dialFailed reports whether err means that no server could be reached: refused, timed out, or a
// host name that does not resolve.
func dialFailed(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var netErr net.Error
	return errors.As(err, &opErr) && opErr.Op == "dial" || errors.As(err, &dnsErr) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &netErr) && netErr.Timeout()
}

// reachHint is the fix for an unreachable server: starting the local cluster, or checking the
// address when it is not this machine's.
func reachHint(host string, err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		return "check the host name in -db (AUDIT_DATABASE_URL)"
	case host == "localhost" || strings.HasPrefix(host, "/"):
		return startHint
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return startHint
	}
	return "check that it is running and that -db (AUDIT_DATABASE_URL) names the right host and port"
}

// shortReason is the last part of a connection error ("connection refused").
func shortReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// withSearchPath sets search_path in a URL or key=value DSN, so that GORM's unqualified table
// names land in the example's schema.
func withSearchPath(databaseURL, schemaName string) (string, error) {
	if strings.HasPrefix(databaseURL, "postgres://") || strings.HasPrefix(databaseURL, "postgresql://") {
		u, err := url.Parse(databaseURL)
		if err != nil {
			return "", fmt.Errorf("invalid database URL: %w", err)
		}
		q := u.Query()
		q.Set("search_path", schemaName)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return databaseURL + " search_path=" + schemaName, nil
}
