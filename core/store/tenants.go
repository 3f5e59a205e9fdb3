package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditkit/auditkit/core"
)

// TenantStatus is the state of a registered tenant.
type TenantStatus string

// The tenant states.
const (
	// TenantActive tenants read and write.
	TenantActive TenantStatus = "active"
	// TenantInactive tenants keep read access to their log; writes through the API are refused.
	TenantInactive TenantStatus = "inactive"
	// TenantSuspended tenants are refused reads and writes through the API; platform
	// administrators keep access.
	TenantSuspended TenantStatus = "suspended"
)

// Valid reports whether s is one of the defined states.
func (s TenantStatus) Valid() bool {
	return s == TenantActive || s == TenantInactive || s == TenantSuspended
}

// Errors about tenants.
var (
	ErrTenantExists    = errors.New("a tenant with this id or slug already exists")
	ErrTenantUnknown   = errors.New("the tenant is not registered")
	ErrTenantInactive  = errors.New("the tenant is inactive: its log is read-only")
	ErrTenantSuspended = errors.New("the tenant is suspended")
	ErrInvalidTenant   = errors.New("invalid tenant")
	// ErrLegalHold is returned by Cleanup for a tenant under legal hold.
	ErrLegalHold = errors.New("the tenant's log is under legal hold and cannot be cleaned up")
)

// Tenant is one row of audit_tenants.
type Tenant struct {
	// ID is the tenant id carried by tokens and records: 1 to 128 ASCII letters, digits and
	// . _ - : @ (the rule of ginaudit.CheckTenant).
	ID string `json:"id"`
	// Slug is an optional unique short name, with the same characters as ID.
	Slug string `json:"slug,omitempty"`
	// Name is a display name.
	Name   string       `json:"name"`
	Status TenantStatus `json:"status"`
	// RetentionDays, when positive, is how long the tenant's records are kept by the background
	// retention policy, instead of the policy's default.
	RetentionDays int `json:"retention_days,omitempty"`
	// LegalHold exempts the tenant's records from every cleanup.
	LegalHold bool      `json:"legal_hold"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// TenantUpdate changes the fields that are not nil. RetentionDays 0 removes the override.
type TenantUpdate struct {
	Slug          *string       `json:"slug"`
	Name          *string       `json:"name"`
	Status        *TenantStatus `json:"status"`
	RetentionDays *int          `json:"retention_days"`
	LegalHold     *bool         `json:"legal_hold"`
}

const (
	maxTenantName     = 200
	maxRetentionDays  = 36500
	defaultTenantPage = 100
	maxTenantPage     = 1000
)

// ValidateTenantID checks a tenant id or slug named field with core.ValidateTenantID, the one
// definition of a tenant id (1 to 128 ASCII letters, digits and . _ - : @, starting and ending
// with a letter or a digit, without ".."). The error wraps ErrInvalidTenant.
func ValidateTenantID(field, s string) error {
	if err := core.ValidateTenantID(s); err != nil {
		msg, _ := strings.CutPrefix(err.Error(), core.ErrInvalidTenant.Error()+" id: ")
		return fmt.Errorf("%w: %s: %s", ErrInvalidTenant, field, msg)
	}
	return nil
}

func validateTenantName(s string) error {
	if len(s) > maxTenantName || !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: name must be valid UTF-8 without control characters, at most %d bytes", ErrInvalidTenant, maxTenantName)
	}
	return nil
}

func validateRetentionDays(n int) error {
	if n < 0 || n > maxRetentionDays {
		return fmt.Errorf("%w: retention_days %d is not between 0 (no override) and %d", ErrInvalidTenant, n, maxRetentionDays)
	}
	return nil
}

const tenantColumns = `id, coalesce(slug, ''), name, status::text, coalesce(retention_days, 0), legal_hold, created_at, updated_at`

func scanTenant(row pgx.Row) (Tenant, error) {
	var t Tenant
	var status string
	err := row.Scan(&t.ID, &t.Slug, &t.Name, &status, &t.RetentionDays, &t.LegalHold, &t.CreatedAt, &t.UpdatedAt)
	t.Status = TenantStatus(status)
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	return t, err
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullIfZero(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

// CreateTenant registers a tenant. Status defaults to active; CreatedAt and UpdatedAt are set by
// the database. A taken id or slug is ErrTenantExists.
func (s *Store) CreateTenant(ctx context.Context, t Tenant) (Tenant, error) {
	if err := ValidateTenantID("id", t.ID); err != nil {
		return Tenant{}, err
	}
	if t.Slug != "" {
		if err := ValidateTenantID("slug", t.Slug); err != nil {
			return Tenant{}, err
		}
	}
	if err := validateTenantName(t.Name); err != nil {
		return Tenant{}, err
	}
	if t.Status == "" {
		t.Status = TenantActive
	}
	if !t.Status.Valid() {
		return Tenant{}, fmt.Errorf("%w: status %q is not active, inactive or suspended", ErrInvalidTenant, truncate(string(t.Status), 64))
	}
	if err := validateRetentionDays(t.RetentionDays); err != nil {
		return Tenant{}, err
	}
	out, err := scanTenant(s.pool.QueryRow(ctx, `INSERT INTO `+s.tenants+
		` (id, slug, name, status, retention_days, legal_hold) VALUES ($1, $2, $3, $4::text::`+
		pgx.Identifier{s.schema, "audit_tenant_status"}.Sanitize()+`, $5, $6) RETURNING `+tenantColumns,
		t.ID, nullIfEmpty(t.Slug), t.Name, string(t.Status), nullIfZero(t.RetentionDays), t.LegalHold))
	if isUniqueViolation(err) {
		return Tenant{}, ErrTenantExists
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("store: create tenant: %w", err)
	}
	return out, nil
}

// GetTenant returns a registered tenant, or ErrNotFound.
func (s *Store) GetTenant(ctx context.Context, id string) (Tenant, error) {
	if err := ValidateTenantID("id", id); err != nil {
		return Tenant{}, ErrNotFound
	}
	t, err := scanTenant(s.pool.QueryRow(ctx, `SELECT `+tenantColumns+` FROM `+s.tenants+` WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, ErrNotFound
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("store: get tenant: %w", err)
	}
	return t, nil
}

// TenantQuery pages through tenants in id order.
type TenantQuery struct {
	Status TenantStatus // only tenants in this state; zero means all
	After  string       // the last id of the previous page
	Limit  int          // zero means 100; at most 1000
}

// ParseTenantQuery reads a TenantQuery from the parameters status, after and limit.
func ParseTenantQuery(v url.Values) (TenantQuery, error) {
	var q TenantQuery
	for p, vals := range v {
		if len(vals) != 1 || vals[0] == "" {
			return TenantQuery{}, paramErr(p, "must be given once, not empty")
		}
		s := vals[0]
		if err := checkText(p, s, maxTextLen); err != nil {
			return TenantQuery{}, err
		}
		switch p {
		case "status":
			q.Status = TenantStatus(s)
			if !q.Status.Valid() {
				return TenantQuery{}, paramErr(p, "%q is not active, inactive or suspended", truncate(s, 64))
			}
		case "after":
			if ValidateTenantID("after", s) != nil {
				return TenantQuery{}, paramErr(p, "%q is not a tenant id", truncate(s, 64))
			}
			q.After = s
		case "limit":
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > maxTenantPage {
				return TenantQuery{}, paramErr(p, "%q is not a number between 1 and %d", truncate(s, 64), maxTenantPage)
			}
			q.Limit = n
		default:
			return TenantQuery{}, paramErr(p, "is not a parameter of this request (status, after, limit)")
		}
	}
	return q, nil
}

// ListTenants returns one page of tenants in id order and the id to pass as After for the next
// page ("" when this is the last).
func (s *Store) ListTenants(ctx context.Context, q TenantQuery) ([]Tenant, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultTenantPage
	}
	limit = min(limit, maxTenantPage)
	var b sqlBuilder
	b.w(`SELECT `, tenantColumns, ` FROM `, s.tenants, ` WHERE TRUE`)
	if q.Status != "" {
		b.w(` AND status::text = `, b.arg(string(q.Status)))
	}
	if q.After != "" {
		b.w(` AND id > `, b.arg(q.After))
	}
	b.w(` ORDER BY id LIMIT `, b.arg(limit+1))
	rows, err := s.pool.Query(ctx, b.sb.String(), b.args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list tenants: %w", err)
	}
	defer rows.Close()
	out := []Tenant{}
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			return nil, "", fmt.Errorf("store: list tenants: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("store: list tenants: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// UpdateTenant changes a tenant and returns it before and after the change. An unknown id is
// ErrNotFound; a slug that another tenant has is ErrTenantExists.
func (s *Store) UpdateTenant(ctx context.Context, id string, u TenantUpdate) (before, after Tenant, err error) {
	if ValidateTenantID("id", id) != nil {
		return Tenant{}, Tenant{}, ErrNotFound
	}
	if u.Slug != nil && *u.Slug != "" {
		if err := ValidateTenantID("slug", *u.Slug); err != nil {
			return Tenant{}, Tenant{}, err
		}
	}
	if u.Name != nil {
		if err := validateTenantName(*u.Name); err != nil {
			return Tenant{}, Tenant{}, err
		}
	}
	if u.Status != nil && !u.Status.Valid() {
		return Tenant{}, Tenant{}, fmt.Errorf("%w: status %q is not active, inactive or suspended", ErrInvalidTenant, truncate(string(*u.Status), 64))
	}
	if u.RetentionDays != nil {
		if err := validateRetentionDays(*u.RetentionDays); err != nil {
			return Tenant{}, Tenant{}, err
		}
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		before, err = scanTenant(tx.QueryRow(ctx, `SELECT `+tenantColumns+` FROM `+s.tenants+` WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		next := before
		if u.Slug != nil {
			next.Slug = *u.Slug
		}
		if u.Name != nil {
			next.Name = *u.Name
		}
		if u.Status != nil {
			next.Status = *u.Status
		}
		if u.RetentionDays != nil {
			next.RetentionDays = *u.RetentionDays
		}
		if u.LegalHold != nil {
			next.LegalHold = *u.LegalHold
		}
		after, err = scanTenant(tx.QueryRow(ctx, `UPDATE `+s.tenants+` SET slug = $2, name = $3, status = $4::text::`+
			pgx.Identifier{s.schema, "audit_tenant_status"}.Sanitize()+`, retention_days = $5, legal_hold = $6, updated_at = now()
			WHERE id = $1 RETURNING `+tenantColumns,
			id, nullIfEmpty(next.Slug), next.Name, string(next.Status), nullIfZero(next.RetentionDays), next.LegalHold))
		return err
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return Tenant{}, Tenant{}, ErrNotFound
	case isUniqueViolation(err):
		return Tenant{}, Tenant{}, ErrTenantExists
	case err != nil:
		return Tenant{}, Tenant{}, fmt.Errorf("store: update tenant: %w", err)
	}
	return before, after, nil
}

// TenantStatusOf returns the status of a registered tenant, or ErrTenantUnknown.
func (s *Store) TenantStatusOf(ctx context.Context, id string) (TenantStatus, error) {
	if ValidateTenantID("id", id) != nil {
		return "", ErrTenantUnknown
	}
	var status string
	err := s.pool.QueryRow(ctx, `SELECT status::text FROM `+s.tenants+` WHERE id = $1`, id).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrTenantUnknown
	}
	if err != nil {
		return "", fmt.Errorf("store: tenant status: %w", err)
	}
	return TenantStatus(status), nil
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
