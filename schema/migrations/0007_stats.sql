-- auditkit migration 0007: pre-aggregated counts for stats. The read side counts closed hours of
-- audit_logs once (per tenant, by action, kind, severity, actor and resource type, and in total)
-- and sums those counts, and per day the counts of its hours, instead of scanning every record of
-- a range. Writers do not maintain the counts: a statement-level trigger only notes the hours that
-- already have counts when an inserting or deleting statement touches them (a record arriving
-- late, a retention delete), and readers count such hours from audit_logs until the counts are
-- redone. Works on a partitioned audit_logs too: statement-level triggers with transition tables
-- fire on the partitioned table for the rows of every partition.
-- It also widens the tenant/time index so that filtered pages find their rows in the index.
-- Names are unqualified: run it with search_path set to the target schema (schema.Migrate does).

-- A tenant's page filtered by kind, severity, status, address, action or resource type reads the
-- index in time order and evaluates the filter on the included columns (an index-only scan), then
-- reads just the rows of the page, instead of reading every row of the range from the table. Same
-- name and key as migration 0001's index, so every query that used it still does.
DROP INDEX audit_logs_tenant_time_idx;

CREATE INDEX audit_logs_tenant_time_idx ON audit_logs (tenant_id, occurred_at DESC, id DESC)
    INCLUDE (kind, severity, status, ip, action, resource_type);

-- On a partitioned audit_logs (migration 0006), the partitions' copies of the index take its name.
SELECT audit_name_partition_indexes(p.name, 'audit_logs') FROM audit_partitions('audit_logs') p;

-- The hours ('h') and days ('d') that have counts, by start (UTC). rolled_mark is the value of
-- audit_stats_mark_seq taken, with audit_logs locked against writes, before the counts were
-- made: a unit is current while no audit_stats_dirty entry of its hours has a higher id.
-- NULL: not counted yet, or a day whose hours were counted again since.
CREATE TABLE audit_stats_units (
    grain       "char"      NOT NULL CHECK (grain IN ('h', 'd')),
    start       timestamptz NOT NULL,
    rolled_mark bigint,
    rolled_at   timestamptz,
    PRIMARY KEY (grain, start)
);

CREATE SEQUENCE audit_stats_mark_seq;

-- Hours whose records changed after they were counted (or while they were being counted).
-- Whatever removes records without DELETE (dropping or detaching a partition) deletes the units
-- of the hours removed: DELETE FROM audit_stats_units WHERE start >= <from> AND start < <to>.
CREATE TABLE audit_stats_dirty (
    id    bigint      NOT NULL DEFAULT pg_catalog.nextval('audit_stats_mark_seq') PRIMARY KEY,
    start timestamptz NOT NULL
);

CREATE INDEX audit_stats_dirty_start_idx ON audit_stats_dirty (start, id);

-- Counts per hour. tenant_key is '' for records without a tenant, and '*' for the counts of all
-- records together (no tenant id is '*'), which answer stats across tenants; meta is true for the
-- service's own records (resource types audit_logs and audit_tenants), which stats leave out by
-- default; dim is 'a' action, 'k' kind, 's' severity, 'u' actor id, 'r' resource type (value ''
-- when the record has none) or 't' the hour's total (value '').
CREATE TABLE audit_stats_hourly (
    hour       timestamptz NOT NULL,
    tenant_key text        NOT NULL,
    meta       boolean     NOT NULL,
    dim        "char"      NOT NULL,
    value      text        NOT NULL,
    n          bigint      NOT NULL,
    PRIMARY KEY (hour, tenant_key, meta, dim, value)
);

-- The same per day (UTC), summed from its 24 hours; the totals of its hours are the rows of dim
-- 'h' with the hour of the day as value ('00' to '23').
CREATE TABLE audit_stats_daily (
    day        timestamptz NOT NULL,
    tenant_key text        NOT NULL,
    meta       boolean     NOT NULL,
    dim        "char"      NOT NULL,
    value      text        NOT NULL,
    n          bigint      NOT NULL,
    PRIMARY KEY (day, tenant_key, meta, dim, value)
);

-- Notes the counted hours a statement's rows fall in. Records of hours after the last counted
-- hour (nearly every write) cost one comparison per row and nothing else. SECURITY DEFINER: a
-- writer's role needs no privilege on the stats tables.
CREATE FUNCTION audit_stats_touch_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO audit_stats_dirty (start)
    SELECT DISTINCT pg_catalog.date_bin('1 hour', n.occurred_at, '2000-01-01 00:00:00+00')
    FROM new_rows n
    WHERE n.occurred_at < (SELECT pg_catalog.max(u.start) + interval '1 hour' FROM audit_stats_units u WHERE u.grain = 'h');
    RETURN NULL;
END
$$;

CREATE FUNCTION audit_stats_touch_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO audit_stats_dirty (start)
    SELECT DISTINCT pg_catalog.date_bin('1 hour', o.occurred_at, '2000-01-01 00:00:00+00')
    FROM old_rows o
    WHERE o.occurred_at < (SELECT pg_catalog.max(u.start) + interval '1 hour' FROM audit_stats_units u WHERE u.grain = 'h');
    RETURN NULL;
END
$$;

CREATE FUNCTION audit_stats_touch_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO audit_stats_dirty (start)
    SELECT DISTINCT pg_catalog.date_bin('1 hour', r.occurred_at, '2000-01-01 00:00:00+00')
    FROM (SELECT occurred_at FROM old_rows UNION ALL SELECT occurred_at FROM new_rows) r
    WHERE r.occurred_at < (SELECT pg_catalog.max(u.start) + interval '1 hour' FROM audit_stats_units u WHERE u.grain = 'h');
    RETURN NULL;
END
$$;

-- TRUNCATE has no transition table: every counted unit is forgotten.
CREATE FUNCTION audit_stats_touch_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
BEGIN
    UPDATE audit_stats_units SET rolled_mark = NULL, rolled_at = NULL WHERE rolled_mark IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_stats_touch_insert AFTER INSERT ON audit_logs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit_stats_touch_insert();

CREATE TRIGGER audit_stats_touch_delete AFTER DELETE ON audit_logs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit_stats_touch_delete();

CREATE TRIGGER audit_stats_touch_update AFTER UPDATE ON audit_logs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit_stats_touch_update();

CREATE TRIGGER audit_stats_touch_truncate AFTER TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION audit_stats_touch_truncate();
