// Package shop is the part the GORM examples share: a small multi-tenant shop (customers, orders,
// credit transfers) stored with GORM and audited by gormaudit, the command that serves it or plays
// a scripted scenario against it, and the audit trail it prints. An example adds only its router
// and its HTTP audit middleware (examples/gin-gorm: Gin and ginaudit; examples/http-gorm:
// net/http and httpaudit).
package shop

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
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

// CustomerChanges is the body of a customer update: the fields it names are set, the others kept.
type CustomerChanges struct {
	Name  *string `json:"name"`
	Email *string `json:"email"`
	TaxID *string `json:"tax_id"`
}

// tokenIssuer is the issuer of the tokens the examples sign for themselves (HS256).
const tokenIssuer = "auditkit-example"

// Config is what an example needs to start.
type Config struct {
	DatabaseURL string // PostgreSQL URL or key=value DSN
	Schema      string // holds audit_logs and the example's tables
	Secret      string // HMAC secret for the example's tokens, at least 32 bytes
	Audience    string // the audience of the example's tokens
}

// App is the running shop without its HTTP side: the database with gormaudit, the audit writer,
// and a pool for reading the audit trail back.
type App struct {
	Cfg    Config
	Audit  core.Config // the configuration the HTTP audit middleware is given too
	DB     *gorm.DB
	Writer *core.Writer
	Pool   *pgxpool.Pool
}

// ErrUnreachable wraps a failure to reach PostgreSQL at all.
var ErrUnreachable = errors.New("PostgreSQL is not reachable")

// ErrNoSuchCustomer is returned by UpdateCustomer and Transfer when a customer id names no
// customer of the tenant. It is the caller's mistake, not the application's: it is answered 404
// and not recorded as an error.
var ErrNoSuchCustomer = errors.New("no such customer")

// ErrInsufficientCredit is returned by Transfer when the source customer's credit would become
// negative; nothing was moved.
var ErrInsufficientCredit = errors.New("insufficient credit")

// Setup checks that PostgreSQL answers, migrates audit_logs and the shop's tables into
// cfg.Schema, and opens the audit writer and GORM with gormaudit.
func Setup(ctx context.Context, cfg Config) (*App, error) {
	if cfg.Audience == "" {
		return nil, errors.New("shop: Config.Audience is empty")
	}
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
	a := &App{Cfg: cfg, Pool: pool}
	ok := false
	defer func() {
		if !ok {
			a.Close(context.WithoutCancel(ctx))
		}
	}()
	if _, err := schema.Migrate(ctx, pool, schema.WithSchema(cfg.Schema)); err != nil {
		return nil, err
	}

	a.Audit = core.Config{
		DatabaseURL: cfg.DatabaseURL,
		Schema:      cfg.Schema,
		JWT: core.JWTConfig{
			Secret:   cfg.Secret,
			Issuer:   tokenIssuer,
			Audience: []string{cfg.Audience},
		},
		CaptureRequestBody: true,
		// The model's `audit:"redact"` tag masks tax_id in row images; request bodies are
		// redacted by key, so the key is named here too.
		RedactFields:  []string{"tax_id"},
		FlushInterval: 200 * time.Millisecond,
	}
	if a.Writer, err = core.Open(ctx, a.Audit); err != nil {
		return nil, err
	}
	a.DB, err = gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, err
	}
	if _, err := gormaudit.Register(a.DB, gormaudit.Options{Writer: a.Writer}); err != nil {
		return nil, err
	}
	if err := a.DB.WithContext(ctx).AutoMigrate(&Customer{}, &Order{}); err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

// Close drains the audit writer and closes the connections.
func (a *App) Close(ctx context.Context) error {
	var errs []error
	if a.Writer != nil {
		errs = append(errs, a.Writer.Close(ctx))
	}
	if a.DB != nil {
		if sqlDB, err := a.DB.DB(); err == nil {
			errs = append(errs, sqlDB.Close())
		}
	}
	if a.Pool != nil {
		a.Pool.Close()
	}
	return errors.Join(errs...)
}

// The operations below take the request's context: GORM bound to it makes every change join the
// request's audit record.

// ListCustomers returns the tenant's customers in id order.
func (a *App) ListCustomers(ctx context.Context, tenant string) ([]Customer, error) {
	var list []Customer
	err := a.DB.WithContext(ctx).Where("tenant_id = ?", tenant).Order("id").Find(&list).Error
	return list, err
}

// CreateCustomer inserts cu and fills in its id and timestamps.
func (a *App) CreateCustomer(ctx context.Context, cu *Customer) error {
	return a.DB.WithContext(ctx).Create(cu).Error
}

// UpdateCustomer applies ch to the tenant's customer id and returns the customer as it is now;
// ErrNoSuchCustomer when the tenant has no such customer.
func (a *App) UpdateCustomer(ctx context.Context, tenant, id string, ch CustomerChanges) (Customer, error) {
	changes := map[string]any{}
	if ch.Name != nil {
		changes["name"] = *ch.Name
	}
	if ch.Email != nil {
		changes["email"] = *ch.Email
	}
	if ch.TaxID != nil {
		changes["tax_id"] = *ch.TaxID
	}
	db := a.DB.WithContext(ctx)
	res := db.Model(&Customer{}).Where("tenant_id = ? AND id = ?", tenant, id).Updates(changes)
	if res.Error != nil {
		return Customer{}, res.Error
	}
	if res.RowsAffected == 0 {
		return Customer{}, ErrNoSuchCustomer
	}
	var cu Customer
	db.Where("id = ?", id).First(&cu)
	return cu, nil
}

// CreateOrder inserts an order of the tenant's customer customerID. A customer the tenant does
// not have is gorm.ErrRecordNotFound.
func (a *App) CreateOrder(ctx context.Context, tenant, customerID, item string, amountCents int64) (Order, error) {
	db := a.DB.WithContext(ctx)
	var cu Customer
	if err := db.Where("tenant_id = ? AND id = ?", tenant, customerID).First(&cu).Error; err != nil {
		return Order{}, err
	}
	o := Order{TenantID: cu.TenantID, CustomerID: cu.ID, Item: item, AmountCents: amountCents}
	if err := db.Create(&o).Error; err != nil {
		return Order{}, err
	}
	return o, nil
}

// Transfer moves amountCents of credit between two of the tenant's customers in one transaction.
// It debits first and checks afterwards, so that a failed transfer really rolls back changes:
// their audit records vanish with them. It returns ErrInsufficientCredit or ErrNoSuchCustomer
// when nothing was moved for those reasons.
func (a *App) Transfer(ctx context.Context, tenant string, from, to uint, amountCents int64) error {
	err := a.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, step := range []struct {
			id    uint
			delta int64
		}{{from, -amountCents}, {to, amountCents}} {
			res := tx.Model(&Customer{}).Where("tenant_id = ? AND id = ?", tenant, step.id).
				Update("credit_cents", gorm.Expr("credit_cents + ?", step.delta))
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				return ErrNoSuchCustomer
			}
		}
		var src Customer
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).First(&src, from).Error; err != nil {
			return err
		}
		if src.CreditCents < 0 {
			return ErrInsufficientCredit
		}
		return nil
	})
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ErrNoSuchCustomer
	}
	return err
}

// Failure is how an example answers an operation's error: the HTTP status, the message for the
// client, and whether the error goes into the request's audit record (the application's own
// failures and refusals do; a customer id the tenant does not have in an update or a transfer
// does not).
func Failure(err error) (status int, msg string, record bool) {
	switch {
	case errors.Is(err, ErrInsufficientCredit):
		return http.StatusConflict, "insufficient credit; nothing was moved", true
	case errors.Is(err, ErrNoSuchCustomer):
		return http.StatusNotFound, "no such customer", false
	case errors.Is(err, gorm.ErrRecordNotFound):
		return http.StatusNotFound, "not found", true
	}
	return http.StatusInternalServerError, "internal error", true
}

// Token signs a token for a user of a tenant, valid for validFor.
func (a *App) Token(sub, email, tenantID, tenantSlug string, validFor time.Duration) string {
	return signToken(a.Cfg.Secret, a.Cfg.Audience, sub, email, tenantID, tenantSlug, validFor)
}

func signToken(secret, audience, sub, email, tenantID, tenantSlug string, validFor time.Duration) string {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": tokenIssuer, "aud": audience, "sub": sub, "email": email,
		"actor_type": "tenant_user", "tenant_id": tenantID, "tenant_slug": tenantSlug,
		"iat": now.Unix(), "exp": now.Add(validFor).Unix(), "jti": fmt.Sprintf("%s-%d", sub, now.UnixNano()),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		panic(err) // HS256 with a []byte key cannot fail
	}
	return s
}
