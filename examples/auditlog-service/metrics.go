package main

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/otelaudit"
)

// serviceMetrics is the service's OpenTelemetry meter provider, read by a Prometheus exporter.
type serviceMetrics struct {
	provider *sdkmetric.MeterProvider
	registry *prometheus.Registry
	api      gin.HandlerFunc // ginaudit.APIMetrics
	stop     func()          // otelaudit.InstrumentWriter's
}

// newServiceMetrics measures w and the API; serve registers /metrics, /healthz and /readyz.
func newServiceMetrics(w *core.Writer) (*serviceMetrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	stop, err := otelaudit.InstrumentWriter(w, mp)
	if err != nil {
		return nil, errors.Join(err, mp.Shutdown(context.Background()))
	}
	api, err := ginaudit.APIMetrics(mp)
	if err != nil {
		stop()
		return nil, errors.Join(err, mp.Shutdown(context.Background()))
	}
	return &serviceMetrics{provider: mp, registry: reg, api: api, stop: stop}, nil
}

// serve registers GET /metrics (Prometheus text format), GET /healthz (the process answers) and
// GET /readyz (the audit writer's condition: 200 healthy or degraded, 503 failing).
func (m *serviceMetrics) serve(r *gin.Engine, w *core.Writer) {
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})))
	r.GET("/healthz", func(c *gin.Context) {
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusOK, gin.H{"status": "ok"})
	})
	r.GET("/readyz", ginaudit.HealthHandler(w))
}

// close stops measuring the writer and shuts the provider down.
func (m *serviceMetrics) close(ctx context.Context) error {
	m.stop()
	return m.provider.Shutdown(ctx)
}
