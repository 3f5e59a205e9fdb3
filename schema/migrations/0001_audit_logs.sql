-- auditkit migration 0001: the audit_logs table, its enum types and the indexes the read API uses.
-- Names are unqualified: run it with search_path set to the target schema (schema.Migrate does).

CREATE TYPE audit_kind AS ENUM ('http', 'insert', 'update', 'delete', 'custom');

CREATE TYPE audit_severity AS ENUM ('info', 'warning', 'error', 'critical');

CREATE TYPE audit_actor_type AS ENUM ('platform_admin', 'tenant_user', 'service', 'system', 'anonymous');

CREATE TABLE audit_logs (
    id            uuid             NOT NULL,
    occurred_at   timestamptz      NOT NULL,
    kind          audit_kind       NOT NULL,
    action        text             NOT NULL,
    severity      audit_severity   NOT NULL DEFAULT 'info',
    tenant_id     text,
    tenant_slug   text,
    actor_id      text,
    actor_type    audit_actor_type NOT NULL DEFAULT 'anonymous',
    actor_email   text,
    actor_auth    text,
    resource_type text,
    resource_id   text,
    before        jsonb,
    after         jsonb,
    diff          jsonb,
    request_id    text,
    method        text,
    route         text,
    path          text,
    query         jsonb,
    status        integer,
    duration_us   bigint,
    ip            inet,
    user_agent    text,
    request_body  jsonb,
    response_body jsonb,
    metadata      jsonb,
    version       smallint         NOT NULL DEFAULT 1,
    -- occurred_at is part of the key so that the table can later be partitioned by time.
    CONSTRAINT audit_logs_pkey PRIMARY KEY (id, occurred_at)
);

CREATE INDEX audit_logs_tenant_time_idx ON audit_logs (tenant_id, occurred_at DESC, id DESC);

CREATE INDEX audit_logs_tenant_resource_idx ON audit_logs (tenant_id, resource_type, resource_id, occurred_at DESC);

CREATE INDEX audit_logs_tenant_actor_idx ON audit_logs (tenant_id, actor_id, occurred_at DESC);

CREATE INDEX audit_logs_request_id_idx ON audit_logs (request_id) WHERE request_id IS NOT NULL;
