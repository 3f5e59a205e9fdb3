package ginaudit

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

var (
	apiListParams   = []string{store.ParamSort, store.ParamLimit, store.ParamCursor, apiParamTenant}
	apiExportParams = []string{store.ParamFormat, store.ParamSort, apiParamTenant}
	apiStatsParams  = []string{store.ParamBucket, store.ParamTop, apiParamTenant}
)

// list serves GET /logs.
func (a *apiServer) list(c *gin.Context) {
	p := apiPrincipalOf(c)
	v, ok := a.params(c, store.FilterParams, apiListParams)
	if !ok {
		return
	}
	sc, ok := a.scope(c, p, v)
	if !ok {
		return
	}
	q, err := a.st.ParseQuery(v)
	if err != nil {
		a.fail(c, err)
		return
	}
	page, err := a.st.List(c.Request.Context(), sc, q)
	if err != nil {
		a.fail(c, err)
		return
	}
	order := q.Order
	if order == "" {
		order = store.NewestFirst
	}
	a.audit(c, p, core.Entry{Action: "auditlog.search", Tenant: core.Tenant{ID: sc.TenantID}, Metadata: map[string]any{
		"scope": scopeMeta(sc), "filters": q.Filter.Map(), "sort": string(order), "page": q.Cursor != "",
		"returned": len(page.Records),
	}})
	resp := gin.H{"logs": page.Records}
	if page.NextCursor != "" {
		resp["next_cursor"] = page.NextCursor
	}
	c.JSON(http.StatusOK, resp)
}

// get serves GET /logs/{id}.
func (a *apiServer) get(c *gin.Context) {
	p := apiPrincipalOf(c)
	v, ok := a.params(c, apiTenantParam)
	if !ok {
		return
	}
	id, err := uuid.Parse(c.Param("id"))
	if err != nil || len(c.Param("id")) != 36 {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", "id", "the id is not a UUID")
		return
	}
	sc, ok := a.scope(c, p, v)
	if !ok {
		return
	}
	rec, err := a.st.Get(c.Request.Context(), sc, id)
	if err != nil {
		a.fail(c, err)
		return
	}
	if p.admin {
		c.Set(TenantKey, core.Tenant{ID: rec.TenantID}) // recorded in the tenant of the record read
	}
	a.audit(c, p, core.Entry{Action: "auditlog.read", Tenant: core.Tenant{ID: rec.TenantID}, ResourceID: id.String(),
		Metadata: map[string]any{"scope": scopeMeta(sc)}})
	c.JSON(http.StatusOK, rec)
}

// export serves GET /logs/export.
func (a *apiServer) export(c *gin.Context) {
	p := apiPrincipalOf(c)
	v, ok := a.params(c, store.FilterParams, apiExportParams)
	if !ok {
		return
	}
	sc, ok := a.scope(c, p, v)
	if !ok {
		return
	}
	f, err := store.ParseFilter(v)
	if err != nil {
		a.fail(c, err)
		return
	}
	format, err := store.ParseFormat(v.Get(store.ParamFormat))
	if err != nil {
		a.fail(c, err)
		return
	}
	if len(v[store.ParamFormat]) > 1 || len(v[store.ParamSort]) > 1 {
		apiFail(c, http.StatusBadRequest, "invalid_parameter", "format and sort must be given once")
		return
	}
	// Without sort, an export across tenants comes in storage order (one sequential scan).
	var order store.Order
	if vals, ok := v[store.ParamSort]; ok {
		if vals[0] == "" { // as GET /logs: an empty value is a mistake, not the default
			a.fail(c, &store.ParamError{Param: store.ParamSort, Problem: "is empty; leave it out for the default"})
			return
		}
		if order, err = store.ParseOrder(vals[0]); err != nil {
			a.fail(c, err)
			return
		}
	}
	if order == "" && !sc.AllTenants {
		order = store.NewestFirst
	}
	// Each export holds a database connection until its last row is sent: bound how many run.
	key := p.limitKey()
	if !a.exports.acquire(key, a.opts.MaxExports) {
		c.Header("Retry-After", "10")
		apiFail(c, http.StatusTooManyRequests, "too_many_exports",
			fmt.Sprintf("this tenant has %d exports running already; wait for one to finish", a.opts.MaxExports))
		return
	}
	defer a.exports.release(key)
	if !a.exports.acquire(apiExportsAll, a.opts.MaxExportsTotal) {
		c.Header("Retry-After", "10")
		apiFail(c, http.StatusServiceUnavailable, "exports_busy", "the service is running as many exports as it allows; retry later")
		return
	}
	defer a.exports.release(apiExportsAll)
	h := c.Writer.Header()
	name := "audit-logs-" + sc.TenantID
	if sc.AllTenants {
		name = "audit-logs-all"
	}
	name += "-" + time.Now().UTC().Format("20060102T150405Z") + "." + string(format)
	if format == store.FormatCSV {
		h.Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		h.Set("Content-Type", "application/x-ndjson")
	}
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Trailer", "X-Export-Records, X-Export-Status")
	started := time.Now()
	rc := http.NewResponseController(c.Writer)
	out := io.Writer(c.Writer)
	if a.opts.WriteTimeout > 0 {
		out = &apiDeadlineWriter{w: c.Writer, rc: rc, d: a.opts.WriteTimeout}
	}
	n, err := a.st.Export(c.Request.Context(), sc, f, store.ExportOptions{Format: format, Order: order}, out)
	sortMeta := string(order)
	if sortMeta == "" {
		sortMeta = "storage"
	}
	meta := map[string]any{"scope": scopeMeta(sc), "filters": f.Map(), "format": string(format), "sort": sortMeta,
		"records": n, "complete": err == nil, "duration_ms": time.Since(started).Milliseconds()}
	a.audit(c, p, core.Entry{Action: "auditlog.export", Tenant: core.Tenant{ID: sc.TenantID}, Metadata: meta})
	if err == nil {
		h.Set("X-Export-Records", strconv.FormatInt(n, 10))
		h.Set("X-Export-Status", "complete")
		return
	}
	if !c.Writer.Written() {
		for _, k := range []string{"Content-Type", "Content-Disposition", "Trailer"} {
			h.Del(k)
		}
		a.fail(c, err)
		return
	}
	// The body is partly sent: tell clients that read trailers, and cut the connection so that
	// no client mistakes a truncated export for a complete one.
	h.Set("X-Export-Records", strconv.FormatInt(n, 10))
	h.Set("X-Export-Status", "incomplete")
	if !errors.Is(err, store.ErrExportWrite) {
		a.log.Error("ginaudit: export failed after it started", "records", n, "error", err)
	}
	// Gin refuses to hijack a connection once the body has started; a write deadline in the past
	// makes the server fail the final chunk and close the connection instead.
	if rc.SetWriteDeadline(time.Unix(1, 0)) != nil {
		if conn, _, herr := c.Writer.Hijack(); herr == nil {
			_ = conn.Close()
		}
	}
	c.Abort()
}

// apiDeadlineWriter gives every write of a response a fresh deadline, so that a client that
// stops reading makes the write fail after d instead of blocking the handler for ever.
type apiDeadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
	d  time.Duration
}

func (w *apiDeadlineWriter) Write(p []byte) (int, error) {
	// ErrNotSupported (a writer that does not reach the connection) leaves writes unbounded, as
	// they were.
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.d))
	return w.w.Write(p)
}

// stats serves GET /logs/stats.
func (a *apiServer) stats(c *gin.Context) {
	p := apiPrincipalOf(c)
	v, ok := a.params(c, store.FilterParams, apiStatsParams)
	if !ok {
		return
	}
	sc, ok := a.scope(c, p, v)
	if !ok {
		return
	}
	q, err := store.ParseStatsQuery(v)
	if err != nil {
		a.fail(c, err)
		return
	}
	st, err := a.st.Stats(c.Request.Context(), sc, q)
	if err != nil {
		a.fail(c, err)
		return
	}
	a.audit(c, p, core.Entry{Action: "auditlog.stats", Tenant: core.Tenant{ID: sc.TenantID}, Metadata: map[string]any{
		"scope": scopeMeta(sc), "filters": q.Filter.Map(), "bucket": string(st.Bucket),
		"from": st.From.Format(time.RFC3339Nano), "to": st.To.Format(time.RFC3339Nano),
	}})
	c.JSON(http.StatusOK, st)
}

// cleanup serves DELETE /logs/cleanup: platform administrators delete one tenant's records
// older than a time (RFC 3339) or an age (Go duration such as 2160h, or days such as 90d).
func (a *apiServer) cleanup(c *gin.Context) {
	p := apiPrincipalOf(c)
	if !requireAdmin(c, p) {
		return
	}
	v, ok := a.params(c, []string{apiParamOlderThan, apiParamTenant})
	if !ok {
		return
	}
	if len(v[apiParamTenant]) == 0 {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamTenant, "name the tenant to clean up with tenant_id; cleanup works on one tenant at a time")
		return
	}
	sc, ok := a.scope(c, p, v)
	if !ok {
		return
	}
	vals := v[apiParamOlderThan]
	if len(vals) != 1 || vals[0] == "" {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamOlderThan, "older_than is required once: an RFC 3339 time, a duration such as 2160h, or days such as 90d")
		return
	}
	now := time.Now().UTC()
	cutoff, err := apiParseOlderThan(vals[0], now)
	if err != nil {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamOlderThan, err.Error())
		return
	}
	if latest := now.Add(-a.opts.MinCleanupAge); cutoff.After(latest) {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamOlderThan,
			fmt.Sprintf("older_than %s would delete records younger than %s, the minimum age a cleanup may delete", cutoff.Format(time.RFC3339), a.opts.MinCleanupAge))
		return
	}
	n, err := a.st.Cleanup(c.Request.Context(), sc.TenantID, cutoff)
	if n > 0 || err == nil {
		a.audit(c, p, core.Entry{Action: "auditlog.cleanup", Severity: core.SeverityWarning, Tenant: core.Tenant{ID: sc.TenantID},
			Metadata: map[string]any{"older_than": cutoff.Format(time.RFC3339Nano), "deleted": n, "complete": err == nil}})
	}
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"tenant_id": sc.TenantID, "older_than": cutoff, "deleted": n})
}

// apiParseOlderThan reads an RFC 3339 time, a date, a Go duration or a number of days ("90d").
func apiParseOlderThan(s string, now time.Time) (time.Time, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 36500 {
			return time.Time{}, fmt.Errorf("%q is not a number of days between 0 and 36500", apiTruncate(s, 64))
		}
		return now.AddDate(0, 0, -n), nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q is negative", s)
		}
		return now.Add(-d), nil
	}
	t, err := store.ParseTime(apiParamOlderThan, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time, a duration such as 2160h, or days such as 90d", apiTruncate(s, 64))
	}
	return t, nil
}

// ingest serves POST /logs and POST /logs/bulk.
func (a *apiServer) ingest(bulk bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		p := apiPrincipalOf(c)
		v, ok := a.params(c, apiTenantParam)
		if !ok {
			return
		}
		tenant := p.id.Tenant.ID
		if vals, ok := v[apiParamTenant]; ok {
			if len(vals) != 1 || store.ValidateTenantID(apiParamTenant, vals[0]) != nil {
				apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamTenant, "tenant_id must be one tenant id")
				return
			}
			if !p.admin && vals[0] != tenant {
				apiFailParam(c, http.StatusForbidden, "forbidden", apiParamTenant, "tenant users can only write to their own tenant")
				return
			}
			tenant = vals[0]
		} else if p.admin {
			tenant = "" // administrators write records without a tenant unless they name one
		}
		key := c.Request.Header.Values("Idempotency-Key")
		if len(key) > 1 {
			apiFail(c, http.StatusBadRequest, "invalid_idempotency_key", "give one Idempotency-Key header")
			return
		}
		idemKey := ""
		if len(key) == 1 {
			idemKey = key[0]
			if err := store.ValidateIdempotencyKey(idemKey); err != nil {
				a.fail(c, err)
				return
			}
		}
		body, ok := a.readJSON(c)
		if !ok {
			return
		}
		inputs, err := store.DecodeInputs(body, bulk, a.opts.MaxBulkRecords, time.Now())
		if err != nil {
			a.fail(c, err)
			return
		}
		h := sha256.New()
		fmt.Fprintf(h, "%s\n%s\n", c.FullPath(), tenant)
		h.Write(body)
		res, err := a.st.Ingest(c.Request.Context(), store.IngestRequest{
			TenantID: tenant, Caller: p.id.Actor, Inputs: inputs, IdempotencyKey: idemKey, RequestHash: h.Sum(nil),
		})
		if err != nil {
			a.fail(c, err)
			return
		}
		if res.Replayed {
			c.Header("Idempotent-Replayed", "true")
		}
		if bulk {
			c.JSON(http.StatusCreated, gin.H{"ids": res.IDs, "count": len(res.IDs)})
			return
		}
		c.JSON(http.StatusCreated, gin.H{"id": res.IDs[0]})
	}
}

// readJSON reads a JSON request body of at most MaxBodyBytes.
func (a *apiServer) readJSON(c *gin.Context) ([]byte, bool) {
	ct := c.GetHeader("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		apiFail(c, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the body as application/json")
		return nil, false
	}
	if c.Request.ContentLength > a.opts.MaxBodyBytes {
		apiFail(c, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body is larger than %d bytes", a.opts.MaxBodyBytes))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, a.opts.MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		apiFail(c, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body is larger than %d bytes", a.opts.MaxBodyBytes))
		return nil, false
	case err != nil:
		apiFail(c, http.StatusBadRequest, "invalid_body", "the body could not be read: "+err.Error())
		return nil, false
	}
	return body, true
}
