-- auditkit migration 0003: the per-tenant hash chain. Every chained record carries its position in
-- its tenant's chain (seq, from 1 without gaps; records without a tenant form the chain of tenant
-- key ''), the hash of the record before it (prev_hash; 32 zero bytes for the first) and its own
-- hash (row_hash: SHA-256 of the canonical encoding of docs/chain.md, which includes prev_hash).
-- Rows written before chaining keep NULL in all three: they are outside the chain.
-- Names are unqualified: run it with search_path set to the target schema (schema.Migrate does).

ALTER TABLE audit_logs ADD COLUMN seq bigint, ADD COLUMN prev_hash bytea, ADD COLUMN row_hash bytea;

-- Not UNIQUE: once audit_logs is partitioned by occurred_at, a unique index must include it. A
-- tenant's seq stays unique because writers take the tenant's head row lock to assign it, and
-- verification reports duplicates.
CREATE INDEX audit_logs_chain_idx ON audit_logs ((coalesce(tenant_id, '')), seq) WHERE seq IS NOT NULL;

-- The last link of each tenant's chain. Writers lock the heads of a batch's tenants (in byte
-- order of tenant_key), append after them and move them forward in the same transaction.
CREATE TABLE audit_chain_heads (
    tenant_key text        PRIMARY KEY,
    seq        bigint      NOT NULL,
    row_hash   bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Signed statements about a chain: a checkpoint vouches for the chain up to seq, a truncation
-- records that retention removed the rows up to seq. Each refers to the previous checkpoint of the
-- tenant by hash.
CREATE TABLE audit_checkpoints (
    tenant_key      text        NOT NULL,
    seq             bigint      NOT NULL,
    row_hash        bytea       NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('checkpoint', 'truncation')),
    created_at      timestamptz NOT NULL,
    prev_checkpoint bytea,
    key_id          text        NOT NULL,
    signature       bytea       NOT NULL,
    PRIMARY KEY (tenant_key, kind, seq)
);
