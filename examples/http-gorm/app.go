package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/examples/internal/shop"
	"github.com/auditkit/auditkit/httpaudit"
)

// handlers serves the shop's API with net/http.
type handlers struct{ shop *shop.App }

// routes builds the ServeMux, wrapped in httpaudit's middleware; requireUser guards the API.
func routes(a *shop.App) (http.Handler, error) {
	h := handlers{shop: a}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }) // not audited by default
	mux.Handle("GET /customers", requireUser(h.listCustomers))
	mux.Handle("POST /customers", requireUser(h.createCustomer))
	mux.Handle("PATCH /customers/{id}", requireUser(h.updateCustomer))
	mux.Handle("POST /customers/{id}/orders", requireUser(h.createOrder))
	mux.Handle("POST /transfers", requireUser(h.transfer))
	// The middleware wraps the mux, so that the record's route is the mux's pattern
	// ("PATCH /customers/{id}").
	return httpaudit.Middleware(httpaudit.Options{Writer: a.Writer, Config: a.Audit})(mux), nil
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

// Every handler passes the request's context to the shop, so that every change joins the
// request's audit record.

func (h handlers) listCustomers(w http.ResponseWriter, r *http.Request) {
	list, err := h.shop.ListCustomers(r.Context(), tenantOf(r))
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (h handlers) createCustomer(w http.ResponseWriter, r *http.Request) {
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
	cu := shop.Customer{TenantID: tenantOf(r), Name: in.Name, Email: in.Email, TaxID: in.TaxID, CreditCents: in.CreditCents}
	if err := h.shop.CreateCustomer(r.Context(), &cu); err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, cu)
}

func (h handlers) updateCustomer(w http.ResponseWriter, r *http.Request) {
	var in shop.CustomerChanges
	if !readJSON(w, r, &in) {
		return
	}
	cu, err := h.shop.UpdateCustomer(r.Context(), tenantOf(r), r.PathValue("id"), in)
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, cu)
}

func (h handlers) createOrder(w http.ResponseWriter, r *http.Request) {
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
	o, err := h.shop.CreateOrder(r.Context(), tenantOf(r), r.PathValue("id"), in.Item, in.AmountCents)
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, o)
}

// transfer moves credit between two customers in one transaction; a failed transfer rolls back,
// and its audit records with it.
func (h handlers) transfer(w http.ResponseWriter, r *http.Request) {
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
	if err := h.shop.Transfer(r.Context(), tenantOf(r), in.From, in.To, in.AmountCents); err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"moved_cents": in.AmountCents})
}

// fail answers err as shop.Failure says, adding it to the request's audit record
// (httpaudit.AddError) when it is the application's failure or refusal: the record says why.
func fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg, record := shop.Failure(err)
	if record {
		httpaudit.AddError(r.Context(), err)
	}
	writeJSON(w, status, map[string]string{"error": msg})
}
