package ginaudit

import (
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

var apiHistoryParams = []string{store.ParamAsOf, store.ParamField, store.ParamSort, store.ParamLimit, store.ParamCursor, apiParamTenant}

// history serves GET /resources/{type}/{id}/history: the changes of one row, page by page
// (newest first unless sort=oldest), the changes of one of its fields (field=), or its image at a
// time (as_of=).
func (a *apiServer) history(c *gin.Context) {
	p := apiPrincipalOf(c)
	v, ok := a.params(c, apiHistoryParams)
	if !ok {
		return
	}
	for _, name := range apiHistoryParams {
		if vals := v[name]; len(vals) > 1 || len(vals) == 1 && vals[0] == "" {
			a.fail(c, &store.ParamError{Param: name, Problem: "must be given once, not empty; leave it out for the default"})
			return
		}
	}
	sc, ok := a.scope(c, p, v)
	if !ok {
		return
	}
	rt, id := c.Param("type"), c.Param("id")
	meta := map[string]any{"scope": scopeMeta(sc), "resource_type": rt, "resource_id": id}
	entry := func() core.Entry {
		return core.Entry{Action: "auditlog.history", Tenant: core.Tenant{ID: sc.TenantID}, Metadata: meta}
	}
	ctx := c.Request.Context()

	if asOf := v.Get(store.ParamAsOf); asOf != "" {
		if v.Has(store.ParamField) || v.Has(store.ParamCursor) || v.Has(store.ParamSort) || v.Has(store.ParamLimit) {
			a.fail(c, &store.ParamError{Param: store.ParamAsOf, Problem: "returns one image: give it without field, sort, limit and cursor"})
			return
		}
		t, err := store.ParseTime(store.ParamAsOf, asOf)
		if err != nil {
			a.fail(c, err)
			return
		}
		meta["as_of"] = t.UTC().Format(time.RFC3339Nano)
		sn, err := a.st.AsOf(ctx, sc, rt, id, t)
		var be *store.BeforeHistoryError
		switch {
		case errors.As(err, &be):
			a.audit(c, p, entry())
			c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": apiError{Code: "before_history",
				Message: "the row's history starts at " + be.Start.Format(time.RFC3339Nano) + ", after as_of"},
				"history_starts": be.Start})
			return
		case errors.Is(err, store.ErrImageUnknown):
			a.audit(c, p, entry())
			apiFail(c, http.StatusConflict, "image_unknown", err.Error())
			return
		case err != nil:
			a.fail(c, err)
			return
		}
		a.audit(c, p, entry())
		c.JSON(http.StatusOK, sn)
		return
	}

	order, err := store.ParseOrder(v.Get(store.ParamSort))
	if err != nil {
		a.fail(c, err)
		return
	}
	q := store.HistoryQuery{Order: order, Cursor: v.Get(store.ParamCursor)}
	if l := v.Get(store.ParamLimit); l != "" {
		pq, err := a.st.ParseQuery(map[string][]string{store.ParamLimit: {l}})
		if err != nil {
			a.fail(c, err)
			return
		}
		q.Limit = pq.Limit
	}
	meta["sort"], meta["page"] = string(order), q.Cursor != ""
	if field := v.Get(store.ParamField); field != "" {
		meta["field"] = field
		fp, err := a.st.FieldHistory(ctx, sc, rt, id, field, q)
		if err != nil {
			a.fail(c, err)
			return
		}
		meta["returned"] = len(fp.Changes)
		a.audit(c, p, entry())
		resp := gin.H{"changes": fp.Changes}
		if fp.NextCursor != "" {
			resp["next_cursor"] = fp.NextCursor
		}
		c.JSON(http.StatusOK, resp)
		return
	}
	page, err := a.st.History(ctx, sc, rt, id, q)
	if err != nil {
		a.fail(c, err)
		return
	}
	meta["returned"] = len(page.Records)
	a.audit(c, p, entry())
	resp := gin.H{"history": page.Records}
	if page.NextCursor != "" {
		resp["next_cursor"] = page.NextCursor
	}
	c.JSON(http.StatusOK, resp)
}
