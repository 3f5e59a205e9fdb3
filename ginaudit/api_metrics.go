package ginaudit

import (
	"errors"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/otelaudit"
)

// apiVerifyReportKey is the gin context key under which GET /logs/verify leaves its report for
// APIMetrics.
const apiVerifyReportKey = "auditkit.verify_report"

// APIMetrics returns a middleware that measures the audit-log API through the OpenTelemetry
// metrics API: auditkit.api.requests (a counter) and auditkit.api.request.duration (a histogram,
// seconds) by route template, method and status, and the chain verifications GET /logs/verify
// ran, by result (auditkit.verify.results, see otelaudit.VerifyRecorder). Use it on the group
// before MountAPI:
//
//	mw, err := ginaudit.APIMetrics(otel.GetMeterProvider())
//	if err != nil {
//		return err
//	}
//	api := r.Group("/api/v1", mw)
func APIMetrics(mp metric.MeterProvider) (gin.HandlerFunc, error) {
	if mp == nil {
		return nil, errors.New("ginaudit: APIMetrics needs a MeterProvider (otel.GetMeterProvider() for the global one)")
	}
	m := mp.Meter("github.com/auditkit/auditkit/ginaudit")
	requests, err := m.Int64Counter("auditkit.api.requests", metric.WithUnit("{request}"),
		metric.WithDescription("Requests to the audit-log API by route, method and status."))
	if err != nil {
		return nil, err
	}
	duration, err := m.Float64Histogram("auditkit.api.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to answer a request to the audit-log API, by route, method and status."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
	if err != nil {
		return nil, err
	}
	verify, err := otelaudit.NewVerifyRecorder(mp)
	if err != nil {
		return nil, err
	}
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched" // keeps unknown paths from growing the label set
		}
		attrs := metric.WithAttributeSet(attribute.NewSet(
			attribute.String("http.route", route),
			attribute.String("http.request.method", c.Request.Method),
			attribute.String("http.response.status_code", strconv.Itoa(c.Writer.Status())),
		))
		ctx := c.Request.Context()
		requests.Add(ctx, 1, attrs)
		duration.Record(ctx, time.Since(start).Seconds(), attrs)
		if v, ok := c.Get(apiVerifyReportKey); ok {
			if rep, ok := v.(*core.VerifyReport); ok {
				verify.Record(ctx, rep)
			}
		}
	}, nil
}
