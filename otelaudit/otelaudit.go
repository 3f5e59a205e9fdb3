// Package otelaudit exports the metrics of an auditkit Writer through the OpenTelemetry metrics
// API: records accepted, written, dropped, failed and refused, retries, batches, the queue's
// depth, the spool's size, the writer's health, and the latency of each batch write.
//
// It depends on the OpenTelemetry API only (go.opentelemetry.io/otel/metric): the application
// chooses the SDK and the exporter (Prometheus, OTLP) through the MeterProvider it passes, and
// packages that do not import otelaudit do not depend on OpenTelemetry's metrics at all.
//
// Instruments (the Prometheus exporter turns dots into underscores and adds _total to counters
// and the unit to names, e.g. auditkit_writer_records_written_total, auditkit_writer_batch_duration_seconds):
//
//	auditkit.writer.records.accepted  counter    records accepted by Enqueue
//	auditkit.writer.records.written   counter    records stored (COPY rows; its rate is rows per second)
//	auditkit.writer.records.dropped   counter    records lost (full queue, closed writer, abandoned)
//	auditkit.writer.records.failed    counter    records the database rejected permanently
//	auditkit.writer.records.invalid   counter    records refused by Enqueue as invalid
//	auditkit.writer.retries           counter    write attempts repeated after a transient error
//	auditkit.writer.batches           counter    batches stored
//	auditkit.writer.queue.depth       gauge      records accepted and not yet written
//	auditkit.writer.queue.capacity    gauge      the queue's bound
//	auditkit.writer.spool.size        gauge      bytes of the spool's files (0 without a spool)
//	auditkit.writer.health            gauge      0 healthy, 1 degraded, 2 failing
//	auditkit.writer.batch.duration    histogram  seconds per write attempt, attribute outcome=ok|error
package otelaudit

import (
	"context"
	"errors"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/auditkit/auditkit/core"
)

// ScopeName is the instrumentation scope of the meters otelaudit creates.
const ScopeName = "github.com/auditkit/auditkit/otelaudit"

// WriterOption adjusts InstrumentWriter.
type WriterOption func(*writerConfig)

type writerConfig struct {
	attrs []attribute.KeyValue
}

// WithAttributes adds attributes to every measurement of the writer, e.g. to tell several
// Writers of one process apart (attribute.String("writer", "orders")).
func WithAttributes(kv ...attribute.KeyValue) WriterOption {
	return func(c *writerConfig) { c.attrs = append(c.attrs, kv...) }
}

// InstrumentWriter registers w's metrics with mp: asynchronous instruments read w.Stats and
// w.Health when the metrics are collected, and a histogram records each batch write through
// w.Observe. stop unregisters them; call it before w is dropped (after Close is fine).
func InstrumentWriter(w *core.Writer, mp metric.MeterProvider, opts ...WriterOption) (stop func(), err error) {
	if w == nil {
		return nil, errors.New("otelaudit: InstrumentWriter needs a Writer")
	}
	if mp == nil {
		return nil, errors.New("otelaudit: InstrumentWriter needs a MeterProvider (otel.GetMeterProvider() for the global one)")
	}
	var cfg writerConfig
	for _, o := range opts {
		o(&cfg)
	}
	set := attribute.NewSet(cfg.attrs...)
	m := mp.Meter(ScopeName)

	counter := func(name, unit, desc string) (metric.Int64ObservableCounter, error) {
		return m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	}
	gauge := func(name, unit, desc string) (metric.Int64ObservableGauge, error) {
		return m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
	}
	var errs []error
	check := func(err error) { errs = append(errs, err) }
	accepted, err := counter("auditkit.writer.records.accepted", "{record}", "Audit records accepted by the writer.")
	check(err)
	written, err := counter("auditkit.writer.records.written", "{record}", "Audit records stored in the database (rows copied).")
	check(err)
	dropped, err := counter("auditkit.writer.records.dropped", "{record}", "Audit records lost: refused because the queue was full or the writer closed, or abandoned at close.")
	check(err)
	failed, err := counter("auditkit.writer.records.failed", "{record}", "Audit records the database rejected permanently.")
	check(err)
	invalid, err := counter("auditkit.writer.records.invalid", "{record}", "Audit records refused as invalid.")
	check(err)
	retries, err := counter("auditkit.writer.retries", "{attempt}", "Batch writes repeated after a transient error.")
	check(err)
	batches, err := counter("auditkit.writer.batches", "{batch}", "Batches stored.")
	check(err)
	depth, err := gauge("auditkit.writer.queue.depth", "{record}", "Audit records accepted and not yet written, in memory and in the spool.")
	check(err)
	capacity, err := gauge("auditkit.writer.queue.capacity", "{record}", "The bound of the writer's memory queue.")
	check(err)
	spool, err := gauge("auditkit.writer.spool.size", "By", "Bytes of the writer's spool files.")
	check(err)
	health, err := gauge("auditkit.writer.health", "{state}", "The writer's condition: 0 healthy, 1 degraded, 2 failing.")
	check(err)
	latency, err := m.Float64Histogram("auditkit.writer.batch.duration", metric.WithUnit("s"),
		metric.WithDescription("Time of each attempt to write a batch to the database."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	check(err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st, h := w.Stats(), w.Health()
		a := metric.WithAttributeSet(set)
		o.ObserveInt64(accepted, int64(st.Enqueued), a)
		o.ObserveInt64(written, int64(st.Written), a)
		o.ObserveInt64(dropped, int64(st.Dropped), a)
		o.ObserveInt64(failed, int64(st.Failed), a)
		o.ObserveInt64(invalid, int64(st.Invalid), a)
		o.ObserveInt64(retries, int64(st.Retried), a)
		o.ObserveInt64(batches, int64(st.Batches), a)
		o.ObserveInt64(depth, int64(st.QueueDepth), a)
		o.ObserveInt64(capacity, int64(h.QueueSize), a)
		o.ObserveInt64(spool, st.SpoolBytes, a)
		o.ObserveInt64(health, int64(h.State), a)
		return nil
	}, accepted, written, dropped, failed, invalid, retries, batches, depth, capacity, spool, health)
	if err != nil {
		return nil, err
	}
	okAttrs := metric.WithAttributeSet(attribute.NewSet(append([]attribute.KeyValue{attribute.String("outcome", "ok")}, cfg.attrs...)...))
	errAttrs := metric.WithAttributeSet(attribute.NewSet(append([]attribute.KeyValue{attribute.String("outcome", "error")}, cfg.attrs...)...))
	remove := w.Observe(func(ev core.BatchEvent) {
		a := okAttrs
		if ev.Err != nil {
			a = errAttrs
		}
		latency.Record(context.Background(), ev.Duration.Seconds(), a)
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			remove()
			_ = reg.Unregister() // fails only when the provider is shut down, which unregisters it too
		})
	}, nil
}

// VerifyRecorder counts the outcomes of hash-chain verifications (core.Verify, store.VerifyChain)
// as auditkit.verify.results with attribute result=ok|broken, for the callers that run them.
type VerifyRecorder struct {
	results metric.Int64Counter
	ok      metric.MeasurementOption
	broken  metric.MeasurementOption
}

// NewVerifyRecorder creates the verification counter with mp.
func NewVerifyRecorder(mp metric.MeterProvider) (*VerifyRecorder, error) {
	if mp == nil {
		return nil, errors.New("otelaudit: NewVerifyRecorder needs a MeterProvider")
	}
	c, err := mp.Meter(ScopeName).Int64Counter("auditkit.verify.results", metric.WithUnit("{verification}"),
		metric.WithDescription("Hash-chain verifications by result: ok, or broken when problems were found."))
	if err != nil {
		return nil, err
	}
	return &VerifyRecorder{results: c,
		ok:     metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "ok"))),
		broken: metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "broken")))}, nil
}

// Record counts one verification report.
func (v *VerifyRecorder) Record(ctx context.Context, rep *core.VerifyReport) {
	if rep == nil {
		return
	}
	if rep.OK {
		v.results.Add(ctx, 1, v.ok)
		return
	}
	v.results.Add(ctx, 1, v.broken)
}
