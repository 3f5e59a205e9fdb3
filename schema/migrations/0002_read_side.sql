-- auditkit migration 0002: what the read side needs. The tenants registry, idempotency keys for
-- ingest, a full-text search index, a BRIN index for time ranges across tenants, and the
-- statement-level trigger that wakes live streams in every process with one NOTIFY per statement.
-- Names are unqualified: run it with search_path set to the target schema (schema.Migrate does).

CREATE TYPE audit_tenant_status AS ENUM ('active', 'inactive', 'suspended');

-- Tenants known to the read API. Writes through the API are accepted only for registered tenants
-- whose status is active; retention_days overrides the retention policy for one tenant, and
-- legal_hold exempts a tenant's rows from every cleanup.
CREATE TABLE audit_tenants (
    id             text                NOT NULL PRIMARY KEY,
    slug           text                UNIQUE,
    name           text                NOT NULL DEFAULT '',
    status         audit_tenant_status NOT NULL DEFAULT 'active',
    retention_days integer             CHECK (retention_days > 0),
    legal_hold     boolean             NOT NULL DEFAULT false,
    created_at     timestamptz         NOT NULL DEFAULT now(),
    updated_at     timestamptz         NOT NULL DEFAULT now()
);

-- Responses of ingest requests that carried an Idempotency-Key, per tenant (scope '' for writes
-- without a tenant). request_hash tells a retry from a different request reusing the key.
CREATE TABLE audit_idempotency_keys (
    scope        text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    status       integer     NOT NULL,
    response     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE INDEX audit_idempotency_keys_created_idx ON audit_idempotency_keys (created_at);

-- The words free-text search looks for: action, resource type and id, path, and the metadata's
-- keys and values. Punctuation that joins identifiers (user.delete, /api/v1/users, inv_42) is
-- turned into spaces so each part is a word; the text is capped so that no record can exceed
-- tsvector's size limit and be refused by the index. The function is inlined, so a query that
-- calls it with the same arguments uses the index.
CREATE FUNCTION audit_search_document(action text, resource_type text, resource_id text, path text, metadata jsonb)
RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.to_tsvector('pg_catalog.simple'::pg_catalog.regconfig,
    pg_catalog.translate(
        pg_catalog.left(pg_catalog.concat_ws(' ', action, resource_type, resource_id, path, metadata::text), 65536),
        './_:@\"{}[],=?&#', '                '));

CREATE INDEX audit_logs_search_idx ON audit_logs
    USING gin (audit_search_document(action, resource_type, resource_id, path, metadata));

-- Cheap to maintain for an append-mostly table; serves retention and time ranges across tenants.
CREATE INDEX audit_logs_occurred_brin_idx ON audit_logs USING brin (occurred_at);

-- Processes with live-stream subscribers register here (and refresh expires_at while they have
-- any). Without a registered listener the trigger below returns at once, so writers pay nothing
-- for streams nobody watches.
CREATE TABLE audit_stream_listeners (
    id         uuid        NOT NULL PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

-- One NOTIFY per inserting statement (a COPY batch is one statement), not per row. The payload
-- names the schema and, per tenant, the occurred_at range (Unix microseconds) and the id range of
-- the inserted rows, in chunks that stay below NOTIFY's 8000-byte limit. Listeners re-query those
-- ranges, so rows committed in any order are found, and de-duplicate by id.
CREATE FUNCTION audit_logs_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    payload text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_stream_listeners WHERE expires_at > pg_catalog.now()) THEN
        RETURN NULL;
    END IF;
    FOR payload IN
        SELECT pg_catalog.json_build_object('s', TG_TABLE_SCHEMA, 'r', pg_catalog.json_agg(
                   pg_catalog.json_build_array(g.tenant_id, g.lo_at, g.hi_at, g.lo_id, g.hi_id)))::text
        FROM (SELECT n.tenant_id,
                     (extract(epoch FROM pg_catalog.min(n.occurred_at)) * 1000000)::bigint AS lo_at,
                     (extract(epoch FROM pg_catalog.max(n.occurred_at)) * 1000000)::bigint AS hi_at,
                     pg_catalog.min(n.id::text) AS lo_id,
                     pg_catalog.max(n.id::text) AS hi_id,
                     (pg_catalog.row_number() OVER ()) / 24 AS chunk
              FROM new_rows n
              GROUP BY n.tenant_id) g
        GROUP BY g.chunk
    LOOP
        PERFORM pg_catalog.pg_notify('auditkit_logs', payload);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_logs_notify AFTER INSERT ON audit_logs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_notify();
