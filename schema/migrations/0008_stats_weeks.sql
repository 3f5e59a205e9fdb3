-- auditkit migration 0008: counts per week for stats. Summing a day's counts reads one row per
-- distinct value of each dimension; across all tenants the actor ids make nearly all of them (a
-- service with 5,000 active actors has ~5,000 actor rows per day), so a 30-day answer summed
-- ~150,000 daily rows. Weeks whose 7 days are counted are summed once more into
-- audit_stats_weekly, and stats read whole weeks from there, days and hours only at the edges of
-- the range: a 30-day range reads 3 or 4 weeks and at most 9 whole days instead of 29 or 30 days.
-- The weekly counts stay exact as the daily ones do: a week is used only while no record of its
-- hours changed since its days were counted (the audit_stats_dirty entries of migration 0007).
-- Nothing is added to the write path. Weeks are ISO weeks: they start on a Monday, 00:00 UTC.
-- Names are unqualified: run it with search_path set to the target schema (schema.Migrate does).

-- Units of grain 'w' are weeks, by the start of their Monday; rolled_mark is the lowest mark of
-- the days summed, NULL while one of them is counted again.
ALTER TABLE audit_stats_units DROP CONSTRAINT audit_stats_units_grain_check;
ALTER TABLE audit_stats_units ADD CONSTRAINT audit_stats_units_grain_check CHECK (grain IN ('h', 'd', 'w'));

-- The counts of audit_stats_daily per week, summed from its 7 days; the totals of its hours are
-- the rows of dim 'h' with the hour of the week as value ('000' to '167').
CREATE TABLE audit_stats_weekly (
    week       timestamptz NOT NULL,
    tenant_key text        NOT NULL,
    meta       boolean     NOT NULL,
    dim        "char"      NOT NULL,
    value      text        NOT NULL,
    n          bigint      NOT NULL,
    PRIMARY KEY (week, tenant_key, meta, dim, value)
);
