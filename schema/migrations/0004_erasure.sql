-- auditkit migration 0004: erasure by crypto-shredding. Personal values of audit records are
-- stored encrypted with a key per data subject (a record's actor, or the resource a row image
-- shows) and tenant; the keys are stored here, wrapped with the master key. Erasing a subject
-- sets wrapped_key to NULL: its values become unreadable while the records, and so their hash
-- chain, stay as they were. Names are unqualified: run it with search_path set to the target
-- schema (schema.Migrate does).

CREATE TABLE audit_subject_keys (
    tenant_key  text        NOT NULL,
    subject     text        NOT NULL,
    key_id      text        NOT NULL,
    wrapped_key bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    erased_at   timestamptz,
    PRIMARY KEY (tenant_key, subject, key_id)
);

-- One active key per subject: concurrent writers that create a subject's first key insert with
-- ON CONFLICT DO NOTHING, and this index decides which key wins. An erased key no longer counts,
-- so the subject's next record gets a new one.
CREATE UNIQUE INDEX audit_subject_keys_active_idx ON audit_subject_keys (tenant_key, subject) WHERE erased_at IS NULL;

-- Readers look keys up by id.
CREATE INDEX audit_subject_keys_key_id_idx ON audit_subject_keys (key_id);
