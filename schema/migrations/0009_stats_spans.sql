-- auditkit migration 0009: counts summed over the whole closed part of a stats range. A range of
-- 30 days across all tenants still sums ~86,000 rows of weekly, daily and hourly counts (one per
-- actor and unit, mostly). Stats now keeps, per scope, the sum over the span of whole counted
-- hours of a range it was asked about (one row per value: ~5,000 for 5,000 actors), made in the
-- background after the first such request, and answers the next requests for that span from it
-- plus the partial and open hours at the edges from audit_logs. A span is exact as the units it
-- was summed from are: it is used only while no record of its hours changed since (the
-- audit_stats_dirty entries of migration 0007). Nothing is added to the write path.
-- Names are unqualified: run it with search_path set to the target schema (schema.Migrate does).

-- A span [start, stop) of whole hours, summed for tenant_key ('*' for all tenants together, as in
-- audit_stats_hourly). rolled_mark is the lowest mark of the units summed; NULL after TRUNCATE.
CREATE TABLE audit_stats_spans (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_key  text        NOT NULL,
    start       timestamptz NOT NULL,
    stop        timestamptz NOT NULL CHECK (stop > start),
    rolled_mark bigint,
    rolled_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_key, start, stop)
);

-- The counts of a span, as in audit_stats_hourly; the totals of its hours are the rows of dim 'h'
-- with the hour's offset from the span's start as value.
CREATE TABLE audit_stats_span_counts (
    span  bigint  NOT NULL REFERENCES audit_stats_spans (id) ON DELETE CASCADE,
    meta  boolean NOT NULL,
    dim   "char"  NOT NULL,
    value text    NOT NULL,
    n     bigint  NOT NULL,
    PRIMARY KEY (span, meta, dim, value)
);

-- TRUNCATE has no transition table: every counted unit and span is forgotten.
CREATE OR REPLACE FUNCTION audit_stats_touch_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
BEGIN
    UPDATE audit_stats_units SET rolled_mark = NULL, rolled_at = NULL WHERE rolled_mark IS NOT NULL;
    UPDATE audit_stats_spans SET rolled_mark = NULL WHERE rolled_mark IS NOT NULL;
    RETURN NULL;
END
$$;
