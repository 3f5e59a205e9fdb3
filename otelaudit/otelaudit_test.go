package otelaudit_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/otelaudit"
)

// collect returns the int64 sums and gauges by name, and the histogram counts by name.
func collect(t *testing.T, r *sdkmetric.ManualReader) (ints map[string]int64, hist map[string]uint64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	ints, hist = map[string]int64{}, map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					ints[m.Name] += p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					ints[m.Name] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if v, _ := p.Attributes.Value("outcome"); v.AsString() == "ok" {
						hist[m.Name] += p.Count
					}
				}
			}
		}
	}
	return ints, hist
}

func TestInstrumentWriter(t *testing.T) {
	db := pgtest.New(t)
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
		core.WriterOptions{BatchSize: 10, FlushInterval: time.Hour, QueueSize: 1000})
	defer w.Close(context.Background())
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	stop, err := otelaudit.InstrumentWriter(w, mp, otelaudit.WithAttributes(attribute.String("writer", "test")))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		if err := w.Enqueue(&core.Record{Kind: core.KindInsert, ResourceType: "orders", ResourceID: string(rune('a' + i)),
			Actor: core.Actor{ID: "u1", Type: core.ActorSystem, Auth: "none"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Enqueue(&core.Record{}); err == nil {
		t.Fatal("an empty record was accepted")
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ints, hist := collect(t, reader)
	want := map[string]int64{
		"auditkit.writer.records.accepted": 25, "auditkit.writer.records.written": 25,
		"auditkit.writer.records.invalid": 1, "auditkit.writer.records.dropped": 0,
		"auditkit.writer.batches": 3, "auditkit.writer.queue.depth": 0, "auditkit.writer.queue.capacity": 1000,
		"auditkit.writer.health": int64(core.Healthy),
	}
	for name, v := range want {
		if got, ok := ints[name]; !ok || got != v {
			t.Errorf("%s = %d (present %v), want %d", name, got, ok, v)
		}
	}
	if hist["auditkit.writer.batch.duration"] != 3 {
		t.Errorf("batch durations recorded: %d, want 3", hist["auditkit.writer.batch.duration"])
	}
	if n := db.Count(t); n != 25 {
		t.Fatalf("audit_logs has %d rows", n)
	}

	// stop unregisters: nothing of the writer is collected any more.
	stop()
	stop()
	ints, _ = collect(t, reader)
	if _, ok := ints["auditkit.writer.records.written"]; ok {
		t.Errorf("written still observed after stop: %v", ints)
	}
}

func TestInstrumentWriterRefusesNil(t *testing.T) {
	mp := sdkmetric.NewMeterProvider()
	defer mp.Shutdown(context.Background())
	if _, err := otelaudit.InstrumentWriter(nil, mp); err == nil || !strings.Contains(err.Error(), "needs a Writer") {
		t.Errorf("nil writer: %v", err)
	}
	db := pgtest.New(t)
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), core.WriterOptions{})
	defer w.Close(context.Background())
	if _, err := otelaudit.InstrumentWriter(w, nil); err == nil || !strings.Contains(err.Error(), "MeterProvider") {
		t.Errorf("nil provider: %v", err)
	}
	if _, err := otelaudit.NewVerifyRecorder(nil); err == nil {
		t.Error("NewVerifyRecorder(nil) succeeded")
	}
}

func TestVerifyRecorder(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	v, err := otelaudit.NewVerifyRecorder(mp)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v.Record(ctx, &core.VerifyReport{OK: true})
	v.Record(ctx, &core.VerifyReport{OK: true})
	v.Record(ctx, &core.VerifyReport{OK: false})
	v.Record(ctx, nil)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "auditkit.verify.results" {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				r, _ := p.Attributes.Value("result")
				got[r.AsString()] += p.Value
			}
		}
	}
	if got["ok"] != 2 || got["broken"] != 1 {
		t.Errorf("verify results %v, want ok 2, broken 1", got)
	}
}

// TestLibrariesStayFreeOfMetricsSDKs checks that the packages an application imports to record
// audit logs do not pull in Prometheus or the OpenTelemetry SDK: only examples and the
// application's own main choose an exporter.
func TestLibrariesStayFreeOfMetricsSDKs(t *testing.T) {
	pkgs := []string{"./core", "./core/store", "./gormaudit", "./entaudit", "./ginaudit", "./httpaudit", "./natsaudit", "./otelaudit"}
	out, err := exec.Command("go", append([]string{"list", "-C", "..", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list printed only %d packages: %s", len(deps), out)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "github.com/prometheus/") || strings.HasPrefix(d, "go.opentelemetry.io/otel/sdk") ||
			strings.HasPrefix(d, "go.opentelemetry.io/otel/exporters/") {
			t.Errorf("a library package depends on %s", d)
		}
	}
	// The example service does use them: the check above would see them if they were there.
	out, err = exec.Command("go", "list", "-C", "..", "-deps", "./examples/auditlog-service").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "github.com/prometheus/client_golang/prometheus\n") ||
		!strings.Contains(string(out), "go.opentelemetry.io/otel/sdk/metric\n") {
		t.Errorf("the example service does not depend on the exporter:\n%s", out)
	}
}
