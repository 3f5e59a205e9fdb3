package ginaudit

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// apiParamNoTenant names, for platform administrators, the chain of the records without a tenant.
const apiParamNoTenant = "no_tenant"

var apiVerifyParams = []string{apiParamFromSeq, apiParamToSeq, apiParamTenant, apiParamNoTenant}

// verifyChain serves GET /logs/verify: core.Verify on one tenant's chain, scoped like GET /logs.
// Platform administrators name the tenant with tenant_id, or the records without a tenant with
// no_tenant=true. The report is the body, with 200 even when it found problems (ok is false);
// checkpoints are checked with APIOptions.ChainPublicKey when it is set.
func (a *apiServer) verifyChain(c *gin.Context) {
	p := apiPrincipalOf(c)
	v, ok := a.params(c, apiVerifyParams)
	if !ok {
		return
	}
	var sc store.Scope
	if vals, has := v[apiParamNoTenant]; has {
		switch {
		case len(vals) != 1 || vals[0] != "true":
			apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamNoTenant, "no_tenant takes the value true")
			return
		case !requireAdmin(c, p):
			return
		case v.Has(apiParamTenant):
			apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamNoTenant, "give tenant_id or no_tenant, not both")
			return
		}
		sc = store.AllTenantsScope()
	} else {
		if sc, ok = a.scope(c, p, v); !ok {
			return
		}
		if sc.AllTenants {
			apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamTenant,
				"a chain belongs to one tenant: name it with tenant_id, or no_tenant=true for the records without a tenant")
			return
		}
	}
	from, ok := apiSeqParam(c, v.Get(apiParamFromSeq), apiParamFromSeq, 0)
	if !ok {
		return
	}
	to, ok := apiSeqParam(c, v.Get(apiParamToSeq), apiParamToSeq, 0)
	if !ok {
		return
	}
	rep, err := a.st.VerifyChain(c.Request.Context(), sc, core.VerifyOptions{FromSeq: from, ToSeq: to, PublicKey: a.opts.ChainPublicKey})
	if errors.Is(err, core.ErrVerifyOptions) {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamFromSeq, err.Error())
		return
	}
	if err != nil {
		a.fail(c, err)
		return
	}
	a.audit(c, p, core.Entry{Action: "auditlog.verify", Tenant: core.Tenant{ID: sc.TenantID}, Metadata: map[string]any{
		"from_seq": from, "to_seq": to, "rows": rep.Rows, "ok": rep.OK, "problems": len(rep.Problems),
		"checkpoints": rep.Checkpoints,
	}})
	c.Set(apiVerifyReportKey, rep) // for APIMetrics
	c.JSON(http.StatusOK, rep)
}
