-- auditkit migration 0005: OpenTelemetry trace context. A record made while a span was active
-- carries the span's W3C trace id (32 lowercase hex digits) and span id (16), so that an audit
-- record links to its trace and back. Both are NULL for records made outside a trace and for
-- rows written before this migration. Record version 3 rows hash them into the chain (fields 33
-- and 34 of docs/chain.md). Names are unqualified: run it with search_path set to the target
-- schema (schema.Migrate does).

ALTER TABLE audit_logs ADD COLUMN trace_id text, ADD COLUMN span_id text;

-- Finding the records of one trace. Partial, so rows without a trace cost the writer nothing here.
CREATE INDEX audit_logs_trace_idx ON audit_logs (trace_id) WHERE trace_id IS NOT NULL;
