package main

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/examples/internal/shop"
	"github.com/auditkit/auditkit/ginaudit"
)

// handlers serves the shop's API with Gin.
type handlers struct{ shop *shop.App }

// routes builds the Gin engine: ginaudit records every request, requireUser guards the API.
func routes(a *shop.App) (http.Handler, error) {
	r := gin.New()
	// The client IP gin reports must not be taken from a header any client can send.
	if err := ginaudit.TrustProxies(r, a.Audit); err != nil {
		return nil, err
	}
	r.Use(gin.Recovery(), ginaudit.Middleware(ginaudit.Options{Writer: a.Writer, Config: a.Audit}))
	r.GET("/health", func(c *gin.Context) { c.String(http.StatusOK, "ok") }) // not audited by default

	h := handlers{shop: a}
	api := r.Group("/", requireUser)
	api.GET("/customers", h.listCustomers)
	api.POST("/customers", h.createCustomer)
	api.PATCH("/customers/:id", h.updateCustomer)
	api.POST("/customers/:id/orders", h.createOrder)
	api.POST("/transfers", h.transfer)
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

// Every handler passes the request's context to the shop, so that every change joins the
// request's audit record.

func (h handlers) listCustomers(c *gin.Context) {
	list, err := h.shop.ListCustomers(c.Request.Context(), tenantOf(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, list)
}

func (h handlers) createCustomer(c *gin.Context) {
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
	cu := shop.Customer{TenantID: tenantOf(c), Name: in.Name, Email: in.Email, TaxID: in.TaxID, CreditCents: in.CreditCents}
	if err := h.shop.CreateCustomer(c.Request.Context(), &cu); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, cu)
}

func (h handlers) updateCustomer(c *gin.Context) {
	var in shop.CustomerChanges
	if err := c.ShouldBindJSON(&in); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	cu, err := h.shop.UpdateCustomer(c.Request.Context(), tenantOf(c), c.Param("id"), in)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, cu)
}

func (h handlers) createOrder(c *gin.Context) {
	var in struct {
		Item        string `json:"item" binding:"required"`
		AmountCents int64  `json:"amount_cents"`
	}
	if err := c.ShouldBindJSON(&in); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	o, err := h.shop.CreateOrder(c.Request.Context(), tenantOf(c), c.Param("id"), in.Item, in.AmountCents)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, o)
}

// transfer moves credit between two customers in one transaction; a failed transfer rolls back,
// and its audit records with it.
func (h handlers) transfer(c *gin.Context) {
	var in struct {
		From        uint  `json:"from" binding:"required"`
		To          uint  `json:"to" binding:"required"`
		AmountCents int64 `json:"amount_cents" binding:"required,gt=0"`
	}
	if err := c.ShouldBindJSON(&in); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	if err := h.shop.Transfer(c.Request.Context(), tenantOf(c), in.From, in.To, in.AmountCents); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"moved_cents": in.AmountCents})
}

// fail answers err as shop.Failure says, adding it to the request's audit record (c.Error) when
// it is the application's failure or refusal.
func fail(c *gin.Context, err error) {
	status, msg, record := shop.Failure(err)
	if record {
		_ = c.Error(err)
	}
	c.JSON(status, gin.H{"error": msg})
}
