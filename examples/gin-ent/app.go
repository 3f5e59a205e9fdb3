package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/examples/gin-ent/ent"
	"github.com/auditkit/auditkit/examples/gin-ent/ent/customer"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/schema"
)

// settings configure the example.
type settings struct {
	DatabaseURL string // the database; Schema is added to it as search_path
	Schema      string // holds the example's tables and audit_logs
	Secret      string // HS256 secret the tokens are verified with
}

// app is the running example: the audited ent client, the audit writer and the Gin engine.
type app struct {
	cfg    core.Config
	sqlDB  *sql.DB
	client *ent.Client
	writer *core.Writer
	engine *gin.Engine
}

// open connects, migrates audit_logs and the example's tables into s.Schema, and builds the
// engine.
func open(ctx context.Context, s settings) (*app, error) {
	if err := schema.ValidateSchemaName(s.Schema); err != nil {
		return nil, err
	}
	dbURL, err := withSearchPath(s.DatabaseURL, s.Schema)
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(pingCtx, s.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL is not reachable at %s (%s); start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start (or point -db or AUDIT_DATABASE_URL at one)", redactURL(s.DatabaseURL), lastLine(err))
	}
	_, err = schema.Migrate(ctx, conn, schema.WithSchema(s.Schema)) // audit_logs
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return nil, err
	}

	cfg := core.Config{
		DatabaseURL: dbURL,
		Schema:      s.Schema,
		JWT:         core.JWTConfig{Secret: s.Secret},
	}
	w, err := core.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sqlDB, err := sql.Open("pgx", dbURL)
	if err != nil {
		return nil, errors.Join(err, closeWriter(w))
	}
	// The two lines of auditing on the ent side: the driver wrapper (writes outside a
	// transaction get one, so their before images can be locked) and the hook, once, for every
	// schema.
	drv := entaudit.Driver(entsql.OpenDB(dialect.Postgres, sqlDB))
	opts := entaudit.Options{Writer: w, Redactor: cfg.Redactor()}
	// A wrong set-up is reported here, at start-up; the hook itself never fails a write for it.
	if err := errors.Join(entaudit.Check(drv), opts.Validate()); err != nil {
		return nil, errors.Join(err, sqlDB.Close(), closeWriter(w))
	}
	client := ent.NewClient(ent.Driver(drv))
	client.Use(entaudit.Hook(ent.AuditSchema, opts))
	if err := client.Schema.Create(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("creating the example's tables: %w", err), client.Close(), closeWriter(w))
	}

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	// The one line on the Gin side. Handlers pass c.Request.Context() to ent, so that the rows
	// they change join the request's record.
	r.Use(gin.Recovery(), ginaudit.Middleware(ginaudit.Options{Writer: w, Config: cfg}))
	a := &app{cfg: cfg, sqlDB: sqlDB, client: client, writer: w, engine: r}
	a.routes()
	return a, nil
}

// closeWriter closes w with a deadline of its own, for the paths where the caller's context may
// already be done.
func closeWriter(w *core.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.Close(ctx)
}

// Close flushes the audit records and releases the connections.
func (a *app) Close(ctx context.Context) error {
	return errors.Join(a.client.Close(), a.writer.Close(ctx))
}

type server struct {
	url  string
	http *http.Server
	done chan error
}

// serve starts the HTTP server on addr.
func (a *app) serve(addr string) (*server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &server{url: "http://" + l.Addr().String(), http: &http.Server{Handler: a.engine, ReadHeaderTimeout: 10 * time.Second}, done: make(chan error, 1)}
	go func() { s.done <- s.http.Serve(l) }()
	return s, nil
}

func (s *server) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
	<-s.done
}

var errInsufficientCredit = errors.New("insufficient credit")

func (a *app) routes() {
	r := a.engine
	r.GET("/health", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	g := r.Group("/", requireTenantUser)
	g.POST("/customers", a.createCustomer)
	g.GET("/customers", a.listCustomers)
	g.PATCH("/customers/:id", a.updateCustomer)
	g.DELETE("/customers/:id", a.deleteCustomer)
	g.POST("/customers/:id/orders", a.createOrder)
	g.POST("/transfers", a.transfer)
	g.GET("/audit", a.auditTrail)
}

// requireTenantUser refuses requests without a verified actor and tenant. ginaudit establishes
// them (and records the request either way); authorising is the application's business.
func requireTenantUser(c *gin.Context) {
	ctx := c.Request.Context()
	_, verified := core.ActorFromContext(ctx) // false without a token and after a refused one
	t, _ := core.TenantFromContext(ctx)
	if !verified || t.ID == "" {
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "a valid bearer token with a tenant is required"})
		return
	}
	c.Next()
}

func tenantOf(c *gin.Context) string {
	t, _ := core.TenantFromContext(c.Request.Context())
	return t.ID
}

func (a *app) createCustomer(c *gin.Context) {
	var req struct {
		Name      string `json:"name"`
		Email     string `json:"email"`
		Credit    int    `json:"credit"`
		APISecret string `json:"api_secret"`
	}
	if err := c.ShouldBindJSON(&req); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	cu, err := a.client.Customer.Create().SetTenantID(tenantOf(c)).SetName(req.Name).SetEmail(req.Email).
		SetCredit(req.Credit).SetAPISecret(req.APISecret).Save(c.Request.Context())
	if err != nil {
		respond(c, err)
		return
	}
	c.JSON(http.StatusCreated, cu)
}

func (a *app) listCustomers(c *gin.Context) {
	cs, err := a.client.Customer.Query().Where(customer.TenantID(tenantOf(c))).Order(customer.ByID()).All(c.Request.Context())
	if err != nil {
		respond(c, err)
		return
	}
	c.JSON(http.StatusOK, cs)
}

func (a *app) updateCustomer(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	var req struct {
		Name      *string `json:"name"`
		Tier      *string `json:"tier"`
		AddCredit int     `json:"add_credit"`
	}
	if err := c.ShouldBindJSON(&req); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	u := a.client.Customer.UpdateOneID(id).Where(customer.TenantID(tenantOf(c))).AddCredit(req.AddCredit)
	if req.Name != nil {
		u.SetName(*req.Name)
	}
	if req.Tier != nil {
		u.SetTier(customer.Tier(*req.Tier))
	}
	cu, err := u.Save(c.Request.Context())
	if err != nil {
		respond(c, err)
		return
	}
	c.JSON(http.StatusOK, cu)
}

func (a *app) deleteCustomer(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	n, err := a.client.Customer.Delete().Where(customer.ID(id), customer.TenantID(tenantOf(c))).Exec(c.Request.Context())
	if err != nil {
		respond(c, err)
		return
	}
	if n == 0 {
		c.JSON(http.StatusNotFound, gin.H{"error": "no such customer"})
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *app) createOrder(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	var req struct {
		Amount int `json:"amount"`
	}
	if err := c.ShouldBindJSON(&req); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	ctx := c.Request.Context()
	var o *ent.Order
	err := withTx(ctx, a.client, func(tx *ent.Tx) error {
		cu, err := tx.Customer.Query().Where(customer.ID(id), customer.TenantID(tenantOf(c))).Only(ctx)
		if err != nil {
			return err
		}
		o, err = tx.Order.Create().SetAmount(req.Amount).SetCustomer(cu).Save(ctx)
		return err
	})
	if err != nil {
		respond(c, err)
		return
	}
	c.JSON(http.StatusCreated, o)
}

// transfer moves credit between two customers of the tenant in one transaction; it is rolled
// back (and leaves no audit record of a change) when the source would go below zero.
func (a *app) transfer(c *gin.Context) {
	var req struct {
		From   int `json:"from"`
		To     int `json:"to"`
		Amount int `json:"amount"`
	}
	if err := c.ShouldBindJSON(&req); err != nil || req.Amount <= 0 {
		c.JSON(http.StatusBadRequest, gin.H{"error": "want from, to and a positive amount"})
		return
	}
	ctx := c.Request.Context()
	tenant := tenantOf(c)
	err := withTx(ctx, a.client, func(tx *ent.Tx) error {
		from, err := tx.Customer.UpdateOneID(req.From).Where(customer.TenantID(tenant)).AddCredit(-req.Amount).Save(ctx)
		if err != nil {
			return err
		}
		if err := tx.Customer.UpdateOneID(req.To).Where(customer.TenantID(tenant)).AddCredit(req.Amount).Exec(ctx); err != nil {
			return err
		}
		if from.Credit < 0 {
			return errInsufficientCredit
		}
		return nil
	})
	if err != nil {
		_ = c.Error(err)
		respond(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"moved": req.Amount})
}

// auditRow is one audit record as the /audit endpoint shows it.
type auditRow struct {
	OccurredAt   time.Time      `json:"occurred_at"`
	Kind         string         `json:"kind"`
	Action       string         `json:"action"`
	Severity     string         `json:"severity"`
	ActorID      string         `json:"actor_id,omitempty"`
	TenantID     string         `json:"tenant_id,omitempty"`
	ResourceType string         `json:"resource_type,omitempty"`
	ResourceID   string         `json:"resource_id,omitempty"`
	RequestID    string         `json:"request_id,omitempty"`
	Method       string         `json:"method,omitempty"`
	Route        string         `json:"route,omitempty"`
	Status       int            `json:"status,omitempty"`
	Diff         map[string]any `json:"diff,omitempty"`
}

// auditTrail returns the tenant's latest audit records (the full read API is a separate
// package; this is a minimal view for trying the example).
func (a *app) auditTrail(c *gin.Context) {
	limit, _ := strconv.Atoi(c.DefaultQuery("limit", "20"))
	limit = min(max(limit, 1), 200)
	rows, err := a.trail(c.Request.Context(), tenantOf(c), limit)
	if err != nil {
		respond(c, err)
		return
	}
	c.JSON(http.StatusOK, rows)
}

// trail reads the latest audit records, newest first, of one tenant ("" for all).
func (a *app) trail(ctx context.Context, tenant string, limit int) ([]auditRow, error) {
	rows, err := a.sqlDB.QueryContext(ctx, `SELECT occurred_at, kind::text, action, severity::text,
		coalesce(actor_id, ''), coalesce(tenant_id, ''), coalesce(resource_type, ''), coalesce(resource_id, ''),
		coalesce(request_id, ''), coalesce(method, ''), coalesce(route, ''), coalesce(status, 0), diff
		FROM audit_logs WHERE $1 = '' OR tenant_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2`, tenant, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		var diff []byte
		if err := rows.Scan(&r.OccurredAt, &r.Kind, &r.Action, &r.Severity, &r.ActorID, &r.TenantID, &r.ResourceType,
			&r.ResourceID, &r.RequestID, &r.Method, &r.Route, &r.Status, &diff); err != nil {
			return nil, err
		}
		if diff != nil {
			if err := jsonUnmarshal(diff, &r.Diff); err != nil {
				return nil, err
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// withTx runs fn in a transaction, committing when it returns nil and rolling back otherwise.
func withTx(ctx context.Context, client *ent.Client, fn func(tx *ent.Tx) error) (err error) {
	tx, err := client.Tx(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		return errors.Join(err, tx.Rollback())
	}
	return tx.Commit()
}

func idParam(c *gin.Context) (int, bool) {
	id, err := strconv.Atoi(c.Param("id"))
	if err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": "bad id"})
		return 0, false
	}
	return id, true
}

// respond maps errors to status codes.
func respond(c *gin.Context, err error) {
	switch {
	case ent.IsNotFound(err):
		c.JSON(http.StatusNotFound, gin.H{"error": "not found"})
	case ent.IsConstraintError(err), ent.IsValidationError(err):
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
	case errors.Is(err, errInsufficientCredit):
		c.JSON(http.StatusConflict, gin.H{"error": err.Error()})
	default:
		c.JSON(http.StatusInternalServerError, gin.H{"error": err.Error()})
	}
}

// withSearchPath returns databaseURL with the search_path runtime parameter set to schema.
func withSearchPath(databaseURL, schema string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("the database URL must be a postgres:// URL")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// lastLine returns the last line of err's message: pgx lists every address it tried, one per
// line, and the last one says why.
func lastLine(err error) string {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
