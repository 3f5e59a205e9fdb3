package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/gormaudit"
	"github.com/auditkit/auditkit/httpaudit"
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
	tokenAudience = "http-gorm-example"
)

// config is what the example needs to start.
type config struct {
	DatabaseURL string // PostgreSQL URL or key=value DSN
	Schema      string // holds audit_logs and the example's tables
	Secret      string // HMAC secret for the example's tokens, at least 32 bytes
}

// app is the running example: the database, the audit writer and the audited handler.
type app struct {
	cfg     config
	audit   core.Config
	db      *gorm.DB
	writer  *core.Writer
	handler http.Handler
	pool    *pgxpool.Pool // for reading the audit trail back
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
	if a.handler, err = a.routes(); err != nil {
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

func (a *app) routes() (http.Handler, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }) // not audited by default
	mux.Handle("GET /customers", requireUser(a.listCustomers))
	mux.Handle("POST /customers", requireUser(a.createCustomer))
	mux.Handle("PATCH /customers/{id}", requireUser(a.updateCustomer))
	mux.Handle("POST /customers/{id}/orders", requireUser(a.createOrder))
	mux.Handle("POST /transfers", requireUser(a.transfer))
	// The middleware wraps the mux, so that the record's route is the mux's pattern
	// ("PATCH /customers/{id}").
	return httpaudit.Middleware(httpaudit.Options{Writer: a.writer, Config: a.audit})(mux), nil
}

// requireUser lets through requests whose bearer token the audit middleware verified. The
// middleware itself only records; deciding who may call the API is the application's job.
// ActorFromContext's ok is false both without a token and after a refused one;
// AuthenticationFromContext tells the two apart.
func requireUser(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		actor, ok := core.ActorFromContext(ctx)
		tenant, _ := core.TenantFromContext(ctx)
		switch {
		case !ok || !strings.HasPrefix(actor.Auth, "jwt:"):
			msg := "a valid bearer token is required"
			if auth := core.AuthenticationFromContext(ctx); auth.Status == core.AuthRefused {
				msg = "the bearer token was refused"
			}
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": msg})
		case tenant.ID == "":
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "the token names no tenant"})
		default:
			next(w, r)
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readJSON decodes the request body into v, answering 400 when it is not valid JSON.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return false
	}
	return true
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
}

func tenantOf(r *http.Request) string {
	t, _ := core.TenantFromContext(r.Context())
	return t.ID
}

// dbFor returns GORM bound to the request's context, so that every change joins the request's
// audit record.
func (a *app) dbFor(r *http.Request) *gorm.DB { return a.db.WithContext(r.Context()) }

func (a *app) listCustomers(w http.ResponseWriter, r *http.Request) {
	var list []Customer
	if err := a.dbFor(r).Where("tenant_id = ?", tenantOf(r)).Order("id").Find(&list).Error; err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *app) createCustomer(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name        string `json:"name"`
		Email       string `json:"email"`
		TaxID       string `json:"tax_id"`
		CreditCents int64  `json:"credit_cents"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	if in.Name == "" {
		badRequest(w, "name is required")
		return
	}
	cu := Customer{TenantID: tenantOf(r), Name: in.Name, Email: in.Email, TaxID: in.TaxID, CreditCents: in.CreditCents}
	if err := a.dbFor(r).Create(&cu).Error; err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, cu)
}

func (a *app) updateCustomer(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name  *string `json:"name"`
		Email *string `json:"email"`
		TaxID *string `json:"tax_id"`
	}
	if !readJSON(w, r, &in) {
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
	res := a.dbFor(r).Model(&Customer{}).Where("tenant_id = ? AND id = ?", tenantOf(r), r.PathValue("id")).Updates(changes)
	if res.Error != nil {
		fail(w, r, res.Error)
		return
	}
	if res.RowsAffected == 0 {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such customer"})
		return
	}
	var cu Customer
	a.dbFor(r).First(&cu, r.PathValue("id"))
	writeJSON(w, http.StatusOK, cu)
}

func (a *app) createOrder(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Item        string `json:"item"`
		AmountCents int64  `json:"amount_cents"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	if in.Item == "" {
		badRequest(w, "item is required")
		return
	}
	var cu Customer
	if err := a.dbFor(r).Where("tenant_id = ? AND id = ?", tenantOf(r), r.PathValue("id")).First(&cu).Error; err != nil {
		fail(w, r, err)
		return
	}
	o := Order{TenantID: cu.TenantID, CustomerID: cu.ID, Item: in.Item, AmountCents: in.AmountCents}
	if err := a.dbFor(r).Create(&o).Error; err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, o)
}

var errInsufficientCredit = errors.New("insufficient credit")

// transfer moves credit between two customers in one transaction. It debits first and checks
// afterwards, so that a failed transfer really rolls back changes: their audit records vanish
// with them.
func (a *app) transfer(w http.ResponseWriter, r *http.Request) {
	var in struct {
		From        uint  `json:"from"`
		To          uint  `json:"to"`
		AmountCents int64 `json:"amount_cents"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	if in.From == 0 || in.To == 0 || in.AmountCents <= 0 {
		badRequest(w, "from, to and a positive amount_cents are required")
		return
	}
	tenant := tenantOf(r)
	err := a.dbFor(r).Transaction(func(tx *gorm.DB) error {
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
		httpaudit.AddError(r.Context(), err) // the record says why the transfer was refused
		writeJSON(w, http.StatusConflict, map[string]string{"error": "insufficient credit; nothing was moved"})
	case errors.Is(err, gorm.ErrRecordNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such customer"})
	case err != nil:
		fail(w, r, err)
	default:
		writeJSON(w, http.StatusOK, map[string]int64{"moved_cents": in.AmountCents})
	}
}

func fail(w http.ResponseWriter, r *http.Request, err error) {
	httpaudit.AddError(r.Context(), err)
	if errors.Is(err, gorm.ErrRecordNotFound) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
		return
	}
	writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
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
