-- auditkit migration 0006: time partitioning of audit_logs, legal holds and retention marks.
--
-- audit_logs becomes a table partitioned by range of occurred_at, one partition per period (a
-- month unless audit_partition_settings says otherwise, aligned on UTC), plus a DEFAULT partition
-- that takes any record no partition covers, so that no write ever fails for a missing
-- partition. A fresh installation (audit_logs empty) is converted here; a table that already
-- holds records is left as it is, and converted online by `auditkit migrate -partition`
-- (schema.PartitionExisting) with the functions below.
-- Names are unqualified: run it with search_path set to the target schema (schema.Migrate does).

-- How audit_logs is partitioned: the length of a partition and how many periods after the
-- current one are created ahead. One row.
CREATE TABLE audit_partition_settings (
    id      boolean NOT NULL DEFAULT true PRIMARY KEY CHECK (id),
    period  text    NOT NULL DEFAULT 'month' CHECK (period IN ('day', 'week', 'month', 'year')),
    premake integer NOT NULL DEFAULT 3 CHECK (premake BETWEEN 1 AND 120)
);

INSERT INTO audit_partition_settings DEFAULT VALUES;

-- Tenants whose records no retention may remove: not cleanup, not a partition drop, not an
-- archive. audit_tenants.legal_hold, set through the tenant registry, holds a tenant too; a
-- tenant is held when either says so.
CREATE TABLE audit_legal_holds (
    tenant_id text        NOT NULL PRIMARY KEY,
    reason    text        NOT NULL DEFAULT '',
    placed_by text        NOT NULL DEFAULT '',
    placed_at timestamptz NOT NULL DEFAULT now()
);

-- Where the retained history of a tenant begins: retention removed (or may have removed) its
-- records that occurred before retained_from. tenant_key is a tenant id, '' for records without a
-- tenant, or '*' for every tenant without a row of its own.
CREATE TABLE audit_retention_marks (
    tenant_key    text        NOT NULL PRIMARY KEY,
    retained_from timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Whether a tenant is under legal hold (audit_legal_holds, or the registry's flag). Retention
-- calls it for every record it considers; it runs with its owner's rights, so that a reader role
-- that may clean up needs no privilege on audit_legal_holds.
CREATE FUNCTION audit_tenant_held(tenant text) RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    SELECT EXISTS (SELECT 1 FROM audit_legal_holds h WHERE h.tenant_id = $1)
        OR EXISTS (SELECT 1 FROM audit_tenants t WHERE t.id = $1 AND t.legal_hold)
$$;

-- Moves the retention mark of key to at, if later (retention calls it after removing records).
CREATE FUNCTION audit_mark_retained(key text, at timestamptz) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    INSERT INTO audit_retention_marks AS m (tenant_key, retained_from) VALUES ($1, $2)
    ON CONFLICT (tenant_key) DO UPDATE SET retained_from = greatest(m.retained_from, excluded.retained_from), updated_at = now()
$$;

-- Where the retained history of a tenant begins (NULL: nothing was ever removed): its own mark,
-- or the default policy's ('*') when it is later and the tenant is neither held nor has its own
-- window.
CREATE FUNCTION audit_retained_from(key text) RETURNS timestamptz
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    SELECT greatest(
        (SELECT m.retained_from FROM audit_retention_marks m WHERE m.tenant_key = $1),
        (SELECT m.retained_from FROM audit_retention_marks m WHERE m.tenant_key = '*'
           AND NOT audit_tenant_held($1)
           AND NOT EXISTS (SELECT 1 FROM audit_tenants o WHERE o.id = $1 AND o.retention_days IS NOT NULL)))
$$;

-- The state of an online conversion of audit_logs (schema.PartitionExisting): rows are copied
-- in id order, and cursor is the last id copied, committed with each batch so that a conversion
-- stopped at any point resumes where it was.
CREATE TABLE audit_partition_progress (
    id         boolean     NOT NULL DEFAULT true PRIMARY KEY CHECK (id),
    cursor     uuid,
    copied     bigint      NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The partitions of a partitioned table: name, lower and upper bound (NULL for the default
-- partition). Bounds are read back from the catalog's text form.
CREATE FUNCTION audit_partitions(parent text)
RETURNS TABLE (name text, lo timestamptz, hi timestamptz, is_default boolean)
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
    SELECT c.relname::text,
           (pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid), $r$FROM \('([^']*)'\)$r$))[1]::timestamptz,
           (pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid), $r$TO \('([^']*)'\)$r$))[1]::timestamptz,
           pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
    FROM pg_catalog.pg_inherits i
    JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = pg_catalog.to_regclass(parent)
    ORDER BY 2 NULLS LAST
$$;

-- The start of the period that holds t (UTC).
CREATE FUNCTION audit_partition_floor(t timestamptz, period text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE
RETURN pg_catalog.date_trunc(period, t, 'UTC');

-- Names the indexes of partition part of parent after the parent's indexes they belong to, with
-- the partition's suffix: audit_logs_tenant_time_idx_p20261201 for the index of partition
-- audit_logs_p20261201 that belongs to audit_logs_tenant_time_idx (a plan shows which index it
-- reads in every partition).
CREATE FUNCTION audit_name_partition_indexes(part text, parent text) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    r       record;
    suffix  text := pg_catalog.substr(part, pg_catalog.length(parent) + 2);
    newname text;
BEGIN
    FOR r IN
        SELECT ci.relname::text AS child, cp.relname::text AS parent_index, con.conname::text AS con
        FROM pg_catalog.pg_index ix
        JOIN pg_catalog.pg_class ci ON ci.oid = ix.indexrelid
        JOIN pg_catalog.pg_inherits inh ON inh.inhrelid = ix.indexrelid
        JOIN pg_catalog.pg_class cp ON cp.oid = inh.inhparent
        LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid
        WHERE ix.indrelid = pg_catalog.to_regclass(part)
    LOOP
        newname := pg_catalog.left(r.parent_index, 62 - pg_catalog.length(suffix)) || '_' || suffix;
        CONTINUE WHEN newname = r.child;
        IF r.con IS NOT NULL THEN
            EXECUTE pg_catalog.format('ALTER TABLE %I RENAME CONSTRAINT %I TO %I', part, r.con, newname);
        ELSE
            EXECUTE pg_catalog.format('ALTER INDEX %I RENAME TO %I', r.child, newname);
        END IF;
    END LOOP;
END
$$;

-- Creates the partitions of parent that cover [from_time, through) and do not exist yet, one per
-- period (a partition next to one made with another period is shortened so as not to overlap).
-- Each is created as a table and attached, so that the parent is locked only in SHARE UPDATE
-- EXCLUSIVE mode (writes and reads go on); records of the new range that are in the default
-- partition are moved into it first. Returns how many partitions it created. Does nothing for a
-- table that is not partitioned.
CREATE FUNCTION audit_create_partitions(parent text, from_time timestamptz, through timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    s        record;
    v_lo     timestamptz;
    v_hi     timestamptz;
    clip     timestamptz;
    part     text;
    def      text;
    created  integer := 0;
    slots    integer := 0;
BEGIN
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(parent)) IS DISTINCT FROM 'p' THEN
        RETURN 0;
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('auditkit.partitions.' || parent, 0));
    SELECT * INTO s FROM audit_partition_settings;
    SELECT p.name INTO def FROM audit_partitions(parent) p WHERE p.is_default;
    v_lo := audit_partition_floor(from_time, s.period);
    WHILE v_lo < through LOOP
        slots := slots + 1;
        IF slots > 5000 THEN
            RAISE EXCEPTION 'auditkit: more than 5000 partitions from % to %', from_time, through;
        END IF;
        v_hi := audit_partition_floor(v_lo + ('1 ' || s.period)::interval, s.period);
        -- Skip what existing partitions cover; stop short of the next one.
        SELECT pg_catalog.max(p.hi) INTO clip FROM audit_partitions(parent) p
        WHERE NOT p.is_default AND p.lo <= v_lo AND p.hi > v_lo;
        IF clip IS NOT NULL THEN
            v_lo := clip;
            CONTINUE;
        END IF;
        SELECT pg_catalog.min(p.lo) INTO clip FROM audit_partitions(parent) p
        WHERE NOT p.is_default AND p.lo > v_lo AND p.lo < v_hi;
        IF clip IS NOT NULL THEN
            v_hi := clip;
        END IF;
        part := parent || '_p' || pg_catalog.to_char(v_lo AT TIME ZONE 'UTC', 'YYYYMMDD');
        EXECUTE pg_catalog.format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)', part, parent);
        IF def IS NOT NULL THEN
            EXECUTE pg_catalog.format('WITH moved AS (DELETE FROM %I WHERE occurred_at >= $1 AND occurred_at < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved', def, part)
                USING v_lo, v_hi;
        END IF;
        EXECUTE pg_catalog.format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, part, v_lo, v_hi);
        PERFORM audit_name_partition_indexes(part, parent);
        created := created + 1;
        v_lo := v_hi;
    END LOOP;
    RETURN created;
END
$$;

-- Creates the partitions of audit_logs for the current period and the settings' premake periods
-- after it. The library calls it when a writer opens and then every few hours; it runs with the
-- rights of its owner, so that a writer role without CREATE can call it.
CREATE FUNCTION audit_ensure_partitions() RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    SELECT audit_create_partitions('audit_logs', pg_catalog.now(),
        audit_partition_floor(pg_catalog.now(), s.period) + ((s.premake + 1) || ' ' || s.period)::interval)
    FROM audit_partition_settings s
$$;

-- How many records (counting at most cap) wait in the default partition of audit_logs, which
-- takes those no other partition covers: records far in the past or future, and those of
-- tenants under legal hold kept when their partition was dropped. Runs with the rights of its
-- owner, like audit_ensure_partitions; 0 when audit_logs is not partitioned.
CREATE FUNCTION audit_default_partition_rows(cap bigint) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
DECLARE
    def text;
    n   bigint;
BEGIN
    SELECT p.name INTO def FROM audit_partitions('audit_logs') p WHERE p.is_default;
    IF def IS NULL THEN
        RETURN 0;
    END IF;
    EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM (SELECT 1 FROM %I LIMIT $1) d', def) INTO n USING cap;
    RETURN n;
END
$$;

-- Creates dst, empty and partitioned by range of occurred_at, with the columns, defaults,
-- constraints, primary key and indexes of src (their names suffixed with _pnew, as an index name
-- is unique in a schema) and a DEFAULT partition dst_default. Triggers, policies and grants are
-- copied by audit_partition_swap.
CREATE FUNCTION audit_partition_clone(src text, dst text) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    r record;
    m text[];
BEGIN
    EXECUTE pg_catalog.format('CREATE TABLE %I (LIKE %I INCLUDING ALL EXCLUDING INDEXES) PARTITION BY RANGE (occurred_at)', dst, src);
    FOR r IN
        SELECT con.conname::text AS name, pg_catalog.pg_get_constraintdef(con.oid) AS def
        FROM pg_catalog.pg_constraint con
        WHERE con.conrelid = pg_catalog.to_regclass(src) AND con.contype IN ('p', 'u', 'x')
    LOOP
        IF pg_catalog.length(r.name) > 58 THEN
            RAISE EXCEPTION 'auditkit: constraint name % is longer than 58 bytes', r.name;
        END IF;
        EXECUTE pg_catalog.format('ALTER TABLE %I ADD CONSTRAINT %I %s', dst, r.name || '_pnew', r.def);
    END LOOP;
    FOR r IN
        SELECT ic.relname::text AS name, pg_catalog.pg_get_indexdef(ix.indexrelid) AS def
        FROM pg_catalog.pg_index ix
        JOIN pg_catalog.pg_class ic ON ic.oid = ix.indexrelid
        WHERE ix.indrelid = pg_catalog.to_regclass(src)
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con WHERE con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid)
    LOOP
        IF pg_catalog.length(r.name) > 58 THEN
            RAISE EXCEPTION 'auditkit: index name % is longer than 58 bytes', r.name;
        END IF;
        m := pg_catalog.regexp_match(r.def, '^CREATE (UNIQUE )?INDEX \S+ ON (ONLY )?\S+ (USING .*)$');
        IF m IS NULL THEN
            RAISE EXCEPTION 'auditkit: cannot read the definition of index %: %', r.name, r.def;
        END IF;
        EXECUTE pg_catalog.format('CREATE %sINDEX %I ON %I %s', coalesce(m[1], ''), r.name || '_pnew', dst, m[3]);
    END LOOP;
    EXECUTE pg_catalog.format('CREATE TABLE %I PARTITION OF %I DEFAULT', dst || '_default', dst);
    PERFORM audit_name_partition_indexes(dst || '_default', dst);
END
$$;

-- Keeps a copy made by audit_partition_clone in step with its source while the source's rows are
-- copied: each inserting, updating or deleting statement on the source does the same to the
-- table named by the trigger's argument.
CREATE FUNCTION audit_partition_sync() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        EXECUTE pg_catalog.format('DELETE FROM %I d USING old_rows o WHERE d.id = o.id AND d.occurred_at = o.occurred_at', TG_ARGV[0]);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        EXECUTE pg_catalog.format('INSERT INTO %I SELECT * FROM new_rows ON CONFLICT DO NOTHING', TG_ARGV[0]);
    END IF;
    RETURN NULL;
END
$$;

-- Installs the triggers that keep dst in step with src (audit_partition_sync).
CREATE FUNCTION audit_partition_sync_start(src text, dst text) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    EXECUTE pg_catalog.format('CREATE TRIGGER auditkit_partition_sync_ins AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION audit_partition_sync(%L)', src, dst);
    EXECUTE pg_catalog.format('CREATE TRIGGER auditkit_partition_sync_upd AFTER UPDATE ON %I REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION audit_partition_sync(%L)', src, dst);
    EXECUTE pg_catalog.format('CREATE TRIGGER auditkit_partition_sync_del AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION audit_partition_sync(%L)', src, dst);
END
$$;

-- Puts the partitioned copy dst in the place of live, which is renamed old: the caller holds
-- (or this takes) an ACCESS EXCLUSIVE lock on live until it commits, so it should set
-- lock_timeout. Only renames and catalog work happen here: the sync triggers are dropped, the
-- indexes and constraints of both tables exchange names (live's get _pold), dst and its
-- partitions take live's names, and live's other triggers, row-level security policies and
-- flags, grants and owner are copied to dst.
CREATE FUNCTION audit_partition_swap(live text, dst text, old text) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    r     record;
    cmd   text;
    roles text;
BEGIN
    EXECUTE pg_catalog.format('LOCK TABLE %I, %I IN ACCESS EXCLUSIVE MODE', live, dst);
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS auditkit_partition_sync_ins ON %I', live);
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS auditkit_partition_sync_upd ON %I', live);
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS auditkit_partition_sync_del ON %I', live);
    FOR r IN
        SELECT ic.relname::text AS name, con.conname::text AS con
        FROM pg_catalog.pg_index ix
        JOIN pg_catalog.pg_class ic ON ic.oid = ix.indexrelid
        LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid
        WHERE ix.indrelid = pg_catalog.to_regclass(live)
    LOOP
        IF r.con IS NOT NULL THEN
            EXECUTE pg_catalog.format('ALTER TABLE %I RENAME CONSTRAINT %I TO %I', live, r.con, pg_catalog.left(r.con, 58) || '_pold');
        ELSE
            EXECUTE pg_catalog.format('ALTER INDEX %I RENAME TO %I', r.name, pg_catalog.left(r.name, 58) || '_pold');
        END IF;
    END LOOP;
    EXECUTE pg_catalog.format('ALTER TABLE %I RENAME TO %I', live, old);
    FOR r IN
        SELECT ic.relname::text AS name, con.conname::text AS con
        FROM pg_catalog.pg_index ix
        JOIN pg_catalog.pg_class ic ON ic.oid = ix.indexrelid
        LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid
        WHERE ix.indrelid = pg_catalog.to_regclass(dst)
    LOOP
        IF r.con IS NOT NULL AND r.con LIKE '%\_pnew' THEN
            EXECUTE pg_catalog.format('ALTER TABLE %I RENAME CONSTRAINT %I TO %I', dst, r.con, pg_catalog.left(r.con, pg_catalog.length(r.con) - 5));
        ELSIF r.con IS NULL AND r.name LIKE '%\_pnew' THEN
            EXECUTE pg_catalog.format('ALTER INDEX %I RENAME TO %I', r.name, pg_catalog.left(r.name, pg_catalog.length(r.name) - 5));
        END IF;
    END LOOP;
    EXECUTE pg_catalog.format('ALTER TABLE %I RENAME TO %I', dst, live);
    FOR r IN SELECT p.name FROM audit_partitions(live) p LOOP
        IF pg_catalog.starts_with(r.name, dst || '_') THEN
            cmd := live || pg_catalog.substr(r.name, pg_catalog.length(dst) + 1);
            EXECUTE pg_catalog.format('ALTER TABLE %I RENAME TO %I', r.name, cmd);
            PERFORM audit_name_partition_indexes(cmd, live);
        END IF;
    END LOOP;
    -- Triggers.
    FOR r IN
        SELECT t.tgname::text AS name, pg_catalog.pg_get_triggerdef(t.oid) AS def
        FROM pg_catalog.pg_trigger t
        WHERE t.tgrelid = pg_catalog.to_regclass(old) AND NOT t.tgisinternal
    LOOP
        cmd := pg_catalog.regexp_replace(r.def, ' ON \S+ ', pg_catalog.format(' ON %I ', live));
        EXECUTE cmd;
    END LOOP;
    -- Row-level security.
    FOR r IN
        SELECT pol.polname::text AS name, pol.polpermissive AS permissive, pol.polcmd AS cmd, pol.polroles AS roles,
               pg_catalog.pg_get_expr(pol.polqual, pol.polrelid) AS qual,
               pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid) AS chk
        FROM pg_catalog.pg_policy pol
        WHERE pol.polrelid = pg_catalog.to_regclass(old)
    LOOP
        SELECT pg_catalog.string_agg(CASE WHEN x = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(a.rolname) END, ', ')
        INTO roles
        FROM pg_catalog.unnest(r.roles) x LEFT JOIN pg_catalog.pg_roles a ON a.oid = x;
        cmd := pg_catalog.format('CREATE POLICY %I ON %I AS %s FOR %s TO %s', r.name, live,
            CASE WHEN r.permissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
            CASE r.cmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
            roles);
        IF r.qual IS NOT NULL THEN
            cmd := cmd || ' USING (' || r.qual || ')';
        END IF;
        IF r.chk IS NOT NULL THEN
            cmd := cmd || ' WITH CHECK (' || r.chk || ')';
        END IF;
        EXECUTE cmd;
    END LOOP;
    IF (SELECT c.relrowsecurity FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(old)) THEN
        EXECUTE pg_catalog.format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', live);
    END IF;
    IF (SELECT c.relforcerowsecurity FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(old)) THEN
        EXECUTE pg_catalog.format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', live);
    END IF;
    -- Grants and owner.
    FOR r IN
        SELECT a.privilege_type AS priv, a.grantee, a.is_grantable
        FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
        WHERE c.oid = pg_catalog.to_regclass(old) AND a.grantee <> c.relowner
    LOOP
        EXECUTE pg_catalog.format('GRANT %s ON %I TO %s%s', r.priv, live,
            CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident((SELECT a.rolname FROM pg_catalog.pg_roles a WHERE a.oid = r.grantee)) END,
            CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    IF (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(old)) <>
       (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(live)) THEN
        EXECUTE pg_catalog.format('ALTER TABLE %I OWNER TO %I', live,
            (SELECT a.rolname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles a ON a.oid = c.relowner WHERE c.oid = pg_catalog.to_regclass(old)));
    END IF;
END
$$;

-- A fresh installation is partitioned now; a table with records waits for the online conversion.
DO $$
BEGIN
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass('audit_logs')) = 'r'
       AND NOT EXISTS (SELECT 1 FROM audit_logs) THEN
        PERFORM audit_partition_clone('audit_logs', 'audit_logs_pnew');
        PERFORM audit_partition_swap('audit_logs', 'audit_logs_pnew', 'audit_logs_unpartitioned');
        DROP TABLE audit_logs_unpartitioned;
        PERFORM audit_ensure_partitions();
    END IF;
END
$$;
