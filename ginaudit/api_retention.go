package ginaudit

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// apiLegalHoldInput is the body of PUT /tenants/{id}/legal-hold.
type apiLegalHoldInput struct {
	Reason string `json:"reason"`
}

// retentionRoutes registers the legal-hold and retention routes on the authenticated group.
func (a *apiServer) retentionRoutes(auth *gin.RouterGroup) {
	auth.GET("/tenants/:id/legal-hold", a.getLegalHold)
	auth.PUT("/tenants/:id/legal-hold", a.placeLegalHold)
	auth.DELETE("/tenants/:id/legal-hold", a.releaseLegalHold)
	auth.GET("/tenants/:id/retention", a.getRetention)
}

// tenantPathParam checks the {id} of a /tenants/{id}/... route and records the request in that
// tenant; false when it answered already.
func (a *apiServer) tenantPathParam(c *gin.Context) (string, bool) {
	if _, ok := a.params(c); !ok {
		return "", false
	}
	id := c.Param("id")
	if err := store.ValidateTenantID("id", id); err != nil {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", "id", err.Error())
		return "", false
	}
	c.Set(TenantKey, core.Tenant{ID: id}) // the request is recorded in the tenant it is about
	return id, true
}

// getLegalHold serves GET /tenants/{id}/legal-hold: the tenant's legal hold, 404 when it has
// none. Platform administrators only.
func (a *apiServer) getLegalHold(c *gin.Context) {
	if !requireAdmin(c, apiPrincipalOf(c)) {
		return
	}
	id, ok := a.tenantPathParam(c)
	if !ok {
		return
	}
	h, err := a.st.GetLegalHold(c.Request.Context(), id)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, h)
}

// placeLegalHold serves PUT /tenants/{id}/legal-hold: places (or updates the reason of) the
// tenant's legal hold, with the administrator as who placed it. Platform administrators only.
func (a *apiServer) placeLegalHold(c *gin.Context) {
	p := apiPrincipalOf(c)
	if !requireAdmin(c, p) {
		return
	}
	id, ok := a.tenantPathParam(c)
	if !ok {
		return
	}
	var in apiLegalHoldInput
	if !a.decodeBody(c, &in) {
		return
	}
	h, err := a.st.PlaceLegalHold(c.Request.Context(), store.LegalHold{TenantID: id, Reason: in.Reason, PlacedBy: p.id.Actor.ID})
	if err != nil {
		a.fail(c, err)
		return
	}
	a.audit(c, p, core.Entry{Action: "tenant.legal_hold_placed", ResourceType: store.ResourceAuditTenants, ResourceID: id,
		Tenant: core.Tenant{ID: id}, Metadata: map[string]any{"reason": h.Reason}})
	c.JSON(http.StatusOK, h)
}

// releaseLegalHold serves DELETE /tenants/{id}/legal-hold: lifts the tenant's legal hold (204),
// 404 when it had none. Platform administrators only.
func (a *apiServer) releaseLegalHold(c *gin.Context) {
	p := apiPrincipalOf(c)
	if !requireAdmin(c, p) {
		return
	}
	id, ok := a.tenantPathParam(c)
	if !ok {
		return
	}
	if err := a.st.ReleaseLegalHold(c.Request.Context(), id); err != nil {
		a.fail(c, err)
		return
	}
	a.audit(c, p, core.Entry{Action: "tenant.legal_hold_released", ResourceType: store.ResourceAuditTenants, ResourceID: id,
		Tenant: core.Tenant{ID: id}})
	c.Status(http.StatusNoContent)
}

// getRetention serves GET /tenants/{id}/retention: where the tenant's retained history begins
// (retained_from, null when retention never removed any of its records), its own retention
// window and its legal hold, so that a client tells "nothing happened" from "removed by
// retention". A platform administrator may ask about any tenant, a tenant's user about their
// own.
func (a *apiServer) getRetention(c *gin.Context) {
	p := apiPrincipalOf(c)
	if !p.admin && p.id.Tenant.ID != c.Param("id") {
		apiFail(c, http.StatusForbidden, "forbidden", "a tenant's user may read only their own tenant's retention")
		return
	}
	id, ok := a.tenantPathParam(c)
	if !ok {
		return
	}
	r, err := a.st.GetRetention(c.Request.Context(), id)
	if err != nil {
		a.fail(c, err)
		return
	}
	if !p.admin && r.LegalHold != nil {
		// Who placed it and why is for platform administrators.
		r.LegalHold = &store.LegalHold{TenantID: r.LegalHold.TenantID, PlacedAt: r.LegalHold.PlacedAt}
	}
	c.JSON(http.StatusOK, r)
}
