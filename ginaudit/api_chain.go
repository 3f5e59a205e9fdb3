package ginaudit

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
)

const (
	apiParamFromSeq       = "from_seq"
	apiParamToSeq         = "to_seq"
	apiMaxCheckpointsPage = 1000
)

var apiCheckpointParams = []string{apiParamFromSeq, apiParamToSeq, apiParamTenant}

// chainPublicKey serves GET /chain/public-key: the key that verifies the checkpoints.
func (a *apiServer) chainPublicKey(c *gin.Context) {
	if _, ok := a.params(c); !ok {
		return
	}
	pub := a.opts.ChainPublicKey
	if pub == nil {
		apiFail(c, http.StatusNotFound, "no_signing_key", "no checkpoint signing key is configured (AUDIT_SIGNING_KEY), so there are no signed checkpoints")
		return
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{
		"key_id":         core.KeyID(pub),
		"algorithm":      "Ed25519",
		"public_key_pem": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	})
}

// chainCheckpoints serves GET /chain/checkpoints: the signed checkpoints of one tenant's chain.
func (a *apiServer) chainCheckpoints(c *gin.Context) {
	p := apiPrincipalOf(c)
	v, ok := a.params(c, apiCheckpointParams)
	if !ok {
		return
	}
	sc, ok := a.scope(c, p, v)
	if !ok {
		return
	}
	if sc.AllTenants {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamTenant, "checkpoints belong to one tenant's chain; name it with tenant_id")
		return
	}
	from, ok := apiSeqParam(c, v.Get(apiParamFromSeq), apiParamFromSeq, 0)
	if !ok {
		return
	}
	to, ok := apiSeqParam(c, v.Get(apiParamToSeq), apiParamToSeq, math.MaxInt64)
	if !ok {
		return
	}
	if from > to {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamFromSeq, "from_seq is after to_seq")
		return
	}
	cps, err := a.st.Checkpoints(c.Request.Context(), sc.TenantID, from, to, apiMaxCheckpointsPage+1)
	if err != nil {
		a.fail(c, err)
		return
	}
	more := len(cps) > apiMaxCheckpointsPage
	if more {
		cps = cps[:apiMaxCheckpointsPage]
	}
	a.audit(c, p, core.Entry{Action: "auditlog.checkpoints", Tenant: core.Tenant{ID: sc.TenantID}, Metadata: map[string]any{
		"from_seq": from, "to_seq": to, "returned": len(cps),
	}})
	resp := gin.H{"checkpoints": cps}
	if more {
		resp["next_from_seq"] = cps[len(cps)-1].Seq + 1
	}
	if cps == nil {
		resp["checkpoints"] = []core.Checkpoint{}
	}
	c.JSON(http.StatusOK, resp)
}

// apiSeqParam parses a chain position: a whole number, at least 0; def when absent.
func apiSeqParam(c *gin.Context, s, name string, def int64) (int64, bool) {
	if s == "" {
		return def, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", name, fmt.Sprintf("%s must be a whole number, at least 0", name))
		return 0, false
	}
	return n, true
}
