package ginaudit

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// apiEraseInput is the body of POST /subjects/erase.
type apiEraseInput struct {
	Subject  string `json:"subject"`
	TenantID string `json:"tenant_id"`
}

// eraseSubject serves POST /subjects/erase: a platform administrator erases a data subject of a
// tenant by destroying its keys (core.EraseSubject). The erasure's own record is written in the
// erasure's transaction, in the tenant, with the administrator as actor.
func (a *apiServer) eraseSubject(c *gin.Context) {
	p := apiPrincipalOf(c)
	if !requireAdmin(c, p) {
		return
	}
	v, ok := a.params(c, apiTenantParam)
	if !ok {
		return
	}
	var in apiEraseInput
	if !a.decodeBody(c, &in) {
		return
	}
	if in.Subject == "" || len(in.Subject) > 1024 {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", "subject", "subject is required (actor:<actor id> or resource:<type>:<id>), at most 1024 bytes")
		return
	}
	tenant := in.TenantID
	if vals := v[apiParamTenant]; len(vals) > 0 {
		if tenant != "" && tenant != vals[0] {
			apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamTenant, "tenant_id differs between the query and the body")
			return
		}
		tenant = vals[0]
	}
	if tenant == "" {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamTenant, "name the tenant whose subject to erase with tenant_id")
		return
	}
	if err := store.ValidateTenantID(apiParamTenant, tenant); err != nil {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamTenant, err.Error())
		return
	}
	c.Set(TenantKey, core.Tenant{ID: tenant}) // the request is recorded in the tenant it erased in
	ctx := core.WithActor(c.Request.Context(), p.id.Actor)
	res, err := a.st.EraseSubject(ctx, tenant, in.Subject)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"tenant_id": tenant, "subject": in.Subject, "keys": res.Keys, "records": res.Records, "key_ids": res.KeyIDs})
}
