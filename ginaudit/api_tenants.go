package ginaudit

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// apiTenantInput is the body of POST /tenants.
type apiTenantInput struct {
	ID            string             `json:"id"`
	Slug          string             `json:"slug"`
	Name          string             `json:"name"`
	Status        store.TenantStatus `json:"status"`
	RetentionDays int                `json:"retention_days"`
	LegalHold     bool               `json:"legal_hold"`
}

// listTenants serves GET /tenants.
func (a *apiServer) listTenants(c *gin.Context) {
	p := apiPrincipalOf(c)
	if !requireAdmin(c, p) {
		return
	}
	v, ok := a.params(c, []string{"status", "after", "limit"})
	if !ok {
		return
	}
	q, err := store.ParseTenantQuery(v)
	if err != nil {
		a.fail(c, err)
		return
	}
	list, next, err := a.st.ListTenants(c.Request.Context(), q)
	if err != nil {
		a.fail(c, err)
		return
	}
	resp := gin.H{"tenants": list}
	if next != "" {
		resp["next_after"] = next
	}
	c.JSON(http.StatusOK, resp)
}

// getTenant serves GET /tenants/{id}.
func (a *apiServer) getTenant(c *gin.Context) {
	p := apiPrincipalOf(c)
	if !requireAdmin(c, p) {
		return
	}
	if _, ok := a.params(c); !ok {
		return
	}
	t, err := a.st.GetTenant(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, t)
}

// createTenant serves POST /tenants.
func (a *apiServer) createTenant(c *gin.Context) {
	p := apiPrincipalOf(c)
	if !requireAdmin(c, p) {
		return
	}
	if _, ok := a.params(c); !ok {
		return
	}
	var in apiTenantInput
	if !a.decodeBody(c, &in) {
		return
	}
	t, err := a.st.CreateTenant(c.Request.Context(), store.Tenant{ID: in.ID, Slug: in.Slug, Name: in.Name,
		Status: in.Status, RetentionDays: in.RetentionDays, LegalHold: in.LegalHold})
	if err != nil {
		a.fail(c, err)
		return
	}
	c.Set(TenantKey, core.Tenant{ID: t.ID, Slug: t.Slug}) // the request is recorded in the tenant it created
	a.audit(c, p, core.Entry{Action: "tenant.created", ResourceType: store.ResourceAuditTenants, ResourceID: t.ID,
		Tenant: core.Tenant{ID: t.ID, Slug: t.Slug}, After: apiTenantImage(t)})
	c.JSON(http.StatusCreated, t)
}

// updateTenant serves PATCH /tenants/{id}.
func (a *apiServer) updateTenant(c *gin.Context) {
	p := apiPrincipalOf(c)
	if !requireAdmin(c, p) {
		return
	}
	if _, ok := a.params(c); !ok {
		return
	}
	var u store.TenantUpdate
	if !a.decodeBody(c, &u) {
		return
	}
	before, after, err := a.st.UpdateTenant(c.Request.Context(), c.Param("id"), u)
	if err != nil {
		a.fail(c, err)
		return
	}
	b, af := apiTenantImage(before), apiTenantImage(after)
	diff := map[string]core.Change{}
	for k, v := range af {
		if bv := b[k]; bv != v {
			diff[k] = core.Change{From: bv, To: v}
		}
	}
	a.audit(c, p, core.Entry{Action: "tenant.updated", ResourceType: store.ResourceAuditTenants, ResourceID: after.ID,
		Tenant: core.Tenant{ID: after.ID, Slug: after.Slug}, Before: b, After: af, Diff: diff})
	c.JSON(http.StatusOK, after)
}

func apiTenantImage(t store.Tenant) map[string]any {
	return map[string]any{"id": t.ID, "slug": t.Slug, "name": t.Name, "status": string(t.Status),
		"retention_days": t.RetentionDays, "legal_hold": t.LegalHold}
}

// decodeBody reads one JSON object into v, refusing unknown fields, invalid UTF-8 and trailing data.
func (a *apiServer) decodeBody(c *gin.Context, v any) bool {
	body, ok := a.readJSON(c)
	if !ok {
		return false
	}
	if !utf8.Valid(body) {
		apiFail(c, http.StatusBadRequest, "invalid_body", "the body is not valid UTF-8")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "json: ")
		code := "invalid_body"
		if strings.HasPrefix(msg, "unknown field") {
			code = "unknown_field"
		}
		apiFail(c, http.StatusBadRequest, code, "the body is not the expected JSON object: "+msg)
		return false
	}
	return true
}
