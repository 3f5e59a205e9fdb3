package core

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Erasure by crypto-shredding (docs/chain.md, "Erasure"): personal values are stored encrypted
// with a key per data subject and tenant, and erasing a subject destroys its key. The chain
// hashes what is stored, the ciphertext, so no record changes and the chain still verifies.

// EncryptedPrefix begins every value stored encrypted: enc:v1:<key id>:<base64url(nonce||ciphertext)>.
const EncryptedPrefix = "enc:v1:"

// ErasedValue is what readers show for a value whose subject's key was erased.
const ErasedValue = "[ERASED]"

// IPEncryptedKey is the metadata key that holds the encrypted client address: the inet column ip
// cannot hold ciphertext, so it stores NULL for an encrypted address.
const IPEncryptedKey = "ip_enc"

// SubjectErasedAction is the action of the record EraseSubject writes.
const SubjectErasedAction = "audit.subject_erased"

// MasterKeySize is the size of the master key and of every subject key: AES-256.
const MasterKeySize = 32

// ErrNoSubjectKey is wrapped by the error of a write that found no active key for a subject after
// creating one: a concurrent writer's key committed after the transaction's snapshot (REPEATABLE
// READ or SERIALIZABLE). Retrying the transaction finds it.
var ErrNoSubjectKey = errors.New("auditkit: no active key for a data subject")

// ActorSubject is the subject of an actor's personal values (actor_email, ip, user_agent).
func ActorSubject(actorID string) string { return "actor:" + actorID }

// ResourceSubject is the subject of the personal fields of a row image (before, after, diff).
func ResourceSubject(resourceType, resourceID string) string {
	return "resource:" + resourceType + ":" + resourceID
}

// ParseMasterKey decodes a master key given as base64 (standard or URL alphabet, padded or not) of
// MasterKeySize bytes.
func ParseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != MasterKeySize {
				return nil, fmt.Errorf("the master key has %d bytes, want %d", len(b), MasterKeySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("the master key is not base64 (generate one with: openssl rand -base64 32)")
}

// PIICipher encrypts the personal values of audit rows and decrypts them for readers. It holds
// the master key, which wraps every subject key; it keeps no subject key beyond one call. It is
// safe for concurrent use.
type PIICipher struct {
	master cipher.AEAD
	fields map[string]bool
}

// NewPIICipher returns a cipher for masterKey (MasterKeySize bytes) that treats the top-level keys
// named in personalFields (compared lower-cased) of before, after and diff as personal.
func NewPIICipher(masterKey []byte, personalFields []string) (*PIICipher, error) {
	if len(masterKey) != MasterKeySize {
		return nil, fmt.Errorf("auditkit: the master key has %d bytes, want %d", len(masterKey), MasterKeySize)
	}
	aead, err := newAEAD(masterKey)
	if err != nil {
		return nil, err
	}
	fields := make(map[string]bool, len(personalFields))
	for _, f := range personalFields {
		if f = strings.ToLower(strings.TrimSpace(f)); f != "" {
			fields[f] = true
		}
	}
	return &PIICipher{master: aead, fields: fields}, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts plain with aead under a random nonce and returns nonce||ciphertext.
func seal(aead cipher.AEAD, plain, aad []byte) []byte {
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	_, _ = rand.Read(out)
	return aead.Seal(out, out, plain, aad)
}

func open(aead cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	n := aead.NonceSize()
	if len(sealed) < n+aead.Overhead() {
		return nil, errors.New("ciphertext too short")
	}
	return aead.Open(nil, sealed[:n], sealed[n:], aad)
}

func keyAAD(tenantKey, subject, keyID string) []byte {
	return []byte(tenantKey + "\x00" + subject + "\x00" + keyID)
}

// WrapKey encrypts a subject key with the master key, bound to its tenant, subject and key id.
func (p *PIICipher) WrapKey(tenantKey, subject, keyID string, key []byte) []byte {
	return seal(p.master, key, keyAAD(tenantKey, subject, keyID))
}

// UnwrapKey decrypts a wrapped subject key; it fails for another master key or another tenant,
// subject or key id.
func (p *PIICipher) UnwrapKey(tenantKey, subject, keyID string, wrapped []byte) ([]byte, error) {
	key, err := open(p.master, wrapped, keyAAD(tenantKey, subject, keyID))
	if err != nil {
		return nil, fmt.Errorf("auditkit: unwrapping key %s of subject %q: %w", keyID, subject, err)
	}
	return key, nil
}

// EncryptValue encrypts plain with a subject key for field of record recordID and returns the
// stored form, EncryptedPrefix<key id>:<base64url(nonce||ciphertext)>.
func EncryptValue(key []byte, keyID, recordID, field string, plain []byte) (string, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return "", err
	}
	return encryptWith(aead, keyID, recordID, field, plain), nil
}

func encryptWith(aead cipher.AEAD, keyID, recordID, field string, plain []byte) string {
	sealed := seal(aead, plain, []byte(recordID+"\x00"+field))
	return EncryptedPrefix + keyID + ":" + base64.RawURLEncoding.EncodeToString(sealed)
}

// EncryptedKeyID returns the key id of a stored encrypted value, and false for any other value.
func EncryptedKeyID(v string) (string, bool) {
	rest, ok := strings.CutPrefix(v, EncryptedPrefix)
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, ":")
	return id, ok && id != ""
}

// DecryptValue decrypts a stored encrypted value of field of record recordID with its subject key.
func DecryptValue(key []byte, recordID, field, v string) ([]byte, error) {
	rest, ok := strings.CutPrefix(v, EncryptedPrefix)
	if !ok {
		return nil, errors.New("auditkit: not an encrypted value")
	}
	_, data, ok := strings.Cut(rest, ":")
	if !ok {
		return nil, errors.New("auditkit: malformed encrypted value")
	}
	sealed, err := base64.RawURLEncoding.DecodeString(data)
	if err != nil {
		return nil, fmt.Errorf("auditkit: malformed encrypted value: %w", err)
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	plain, err := open(aead, sealed, []byte(recordID+"\x00"+field))
	if err != nil {
		return nil, fmt.Errorf("auditkit: decrypting %s of record %s: %w", field, recordID, err)
	}
	return plain, nil
}

// The positions in a row (Columns) of the values encryption reads or replaces.
const (
	colID           = 0
	colActorID      = 7
	colActorEmail   = 9
	colResourceType = 11
	colResourceID   = 12
	colBefore       = 13
	colAfter        = 14
	colDiff         = 15
	colIP           = 23
	colUserAgent    = 24
	colMetadata     = 27
)

// subjectRef names one subject's key: keys are per (tenant key, subject).
type subjectRef struct{ tenant, subject string }

// subjectKey is a subject's active key, unwrapped for one batch.
type subjectKey struct {
	id   string
	aead cipher.AEAD
}

// rowPlan is what encryption found personal in one row.
type rowPlan struct {
	actor, resource bool
	images          [3]map[string]json.RawMessage // before, after, diff, parsed when they hold a personal field
}

// plan decides which values of rows are personal and returns the subjects whose keys they need,
// sorted, so that concurrent writers create keys in the same order.
func (p *PIICipher) plan(rows [][]any) ([]rowPlan, []subjectRef, error) {
	plans := make([]rowPlan, len(rows))
	var subjects []subjectRef
	add := func(s subjectRef) {
		if !slices.Contains(subjects, s) {
			subjects = append(subjects, s)
		}
	}
	for i, row := range rows {
		tenant := tenantKeyOf(row)
		if actor, ok := row[colActorID].(string); ok && actor != "" &&
			(row[colActorEmail] != nil || row[colIP] != nil || row[colUserAgent] != nil) {
			plans[i].actor = true
			add(subjectRef{tenant, ActorSubject(actor)})
		}
		resID, ok := row[colResourceID].(string)
		if !ok || resID == "" || len(p.fields) == 0 {
			continue
		}
		for j, col := range []int{colBefore, colAfter, colDiff} {
			doc, _ := row[col].([]byte)
			if doc == nil || !p.mentions(doc) {
				continue
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(doc, &m); err != nil {
				return nil, nil, fmt.Errorf("column %s: %w", Columns[col], err)
			}
			for k, v := range m {
				if p.fields[strings.ToLower(k)] && !isJSONNull(v) {
					plans[i].images[j] = m
					plans[i].resource = true
					break
				}
			}
		}
		if plans[i].resource {
			typ, _ := row[colResourceType].(string)
			add(subjectRef{tenant, ResourceSubject(typ, resID)})
		}
	}
	slices.SortFunc(subjects, func(a, b subjectRef) int {
		if c := strings.Compare(a.tenant, b.tenant); c != 0 {
			return c
		}
		return strings.Compare(a.subject, b.subject)
	})
	return plans, subjects, nil
}

// mentions reports whether doc may hold a personal field, case-insensitively, before it is parsed.
func (p *PIICipher) mentions(doc []byte) bool {
	lower := bytes.ToLower(doc)
	for f := range p.fields {
		if bytes.Contains(lower, []byte(`"`+f+`"`)) {
			return true
		}
	}
	return false
}

func isJSONNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// keysArg returns the argument of piiSQL.keys: a new wrapped key for every subject, as a JSON
// array, in subjects' order.
func (p *PIICipher) keysArg(subjects []subjectRef) (string, error) {
	buf := make([]byte, 0, 160*len(subjects))
	buf = append(buf, '[')
	for i, s := range subjects {
		key := make([]byte, MasterKeySize)
		if _, err := rand.Read(key); err != nil {
			return "", err
		}
		id := newKeyID()
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"t":`...)
		buf = appendJSONString(buf, s.tenant)
		buf = append(buf, `,"s":`...)
		buf = appendJSONString(buf, s.subject)
		buf = append(buf, `,"k":"`...)
		buf = append(buf, id...)
		buf = append(buf, `","x":"`...)
		buf = hex.AppendEncode(buf, p.WrapKey(s.tenant, s.subject, id, key))
		buf = append(buf, `"}`...)
	}
	return string(append(buf, ']')), nil
}

// newKeyID returns a random key id: 32 hex digits.
func newKeyID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// piiSQL holds the statements on the subject keys of one schema.
type piiSQL struct {
	// keys creates the missing active keys of the subjects in $1 (a JSON array of tenant t,
	// subject s, key id k and hex wrapped key x, sorted by tenant and subject) and returns the
	// active keys of all of them. A key that a concurrent writer committed after the statement's
	// snapshot is neither inserted (the partial unique index refuses it) nor returned: active
	// reads it with a new snapshot.
	keys string
	// active returns the active keys of the subjects in $1 (the same JSON array).
	active string
}

func newPIISQL(schema string) piiSQL {
	keys := pgx.Identifier{schema, "audit_subject_keys"}.Sanitize()
	const want = `SELECT * FROM jsonb_to_recordset($1::jsonb) AS w(t text, s text, k text, x text)`
	return piiSQL{
		keys: `WITH w AS (` + want + `), ins AS (INSERT INTO ` + keys + ` (tenant_key, subject, key_id, wrapped_key) ` +
			`SELECT t, s, k, decode(x, 'hex') FROM w ORDER BY t COLLATE "C", s COLLATE "C" ON CONFLICT DO NOTHING ` +
			`RETURNING tenant_key, subject, key_id, wrapped_key) ` +
			`SELECT tenant_key, subject, key_id, wrapped_key FROM ins UNION ALL ` +
			`SELECT k.tenant_key, k.subject, k.key_id, k.wrapped_key FROM ` + keys + ` k JOIN w ON k.tenant_key = w.t AND k.subject = w.s ` +
			`WHERE k.erased_at IS NULL`,
		active: `SELECT k.tenant_key, k.subject, k.key_id, k.wrapped_key FROM ` + keys + ` k ` +
			`JOIN (` + want + `) w ON k.tenant_key = w.t AND k.subject = w.s WHERE k.erased_at IS NULL`,
	}
}

// rowQuery runs a statement and returns its rows: the way the sink (a pgx connection) and
// TxWriter (whatever the caller's Execer can do) read the subject keys.
type rowQuery func(ctx context.Context, q string, arg string) (Rows, error)

// pgxRows adapts pgx.Rows to Rows.
type pgxRows struct{ pgx.Rows }

func (r pgxRows) Close() error { r.Rows.Close(); return nil }

// pgxQuery is a rowQuery on a pgx connection, pool or transaction.
func pgxQuery(db interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}) rowQuery {
	return func(ctx context.Context, q string, arg string) (Rows, error) {
		rows, err := db.Query(ctx, q, arg)
		if err != nil {
			return nil, err
		}
		return pgxRows{rows}, nil
	}
}

// execerQuery is a rowQuery on db, or nil when db cannot read rows.
func execerQuery(db Execer) rowQuery {
	switch d := db.(type) {
	case pgxExecer:
		if pq, ok := d.db.(interface {
			Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		}); ok {
			return pgxQuery(pq)
		}
	case interface {
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	}:
		return func(ctx context.Context, q string, arg string) (Rows, error) {
			rows, err := d.QueryContext(ctx, q, arg)
			if err != nil {
				return nil, err
			}
			return rows, nil
		}
	case RowsQuerier:
		return func(ctx context.Context, q string, arg string) (Rows, error) { return d.QueryRows(ctx, q, arg) }
	}
	return nil
}

// readKeys runs q with arg and unwraps the keys it returns into keys.
func (p *PIICipher) readKeys(ctx context.Context, query rowQuery, q, arg string, keys map[subjectRef]subjectKey) error {
	rows, err := query(ctx, q, arg)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			ref     subjectRef
			id      string
			wrapped []byte
		)
		if err := rows.Scan(&ref.tenant, &ref.subject, &id, &wrapped); err != nil {
			return err
		}
		key, err := p.UnwrapKey(ref.tenant, ref.subject, id, wrapped)
		if err != nil {
			// Another master key than the one the subject's key was wrapped with: no retry helps.
			return &UnavailableError{Err: err}
		}
		aead, err := newAEAD(key)
		if err != nil {
			return err
		}
		keys[ref] = subjectKey{id: id, aead: aead}
	}
	return rows.Err()
}

// encryptRows returns rows with their personal values encrypted under their subjects' active
// keys, which it reads and, for new subjects, creates through query in the caller's transaction.
// Rows that change are copied, so that a batch written again (a retry, a spooled record) is
// encrypted afresh from the plain values. Rows without personal values are returned as they are,
// and without any, nothing is queried.
func (p *PIICipher) encryptRows(ctx context.Context, query rowQuery, sqls piiSQL, rows [][]any) ([][]any, error) {
	plans, subjects, err := p.plan(rows)
	if err != nil {
		return nil, err
	}
	if len(subjects) == 0 {
		return rows, nil
	}
	arg, err := p.keysArg(subjects)
	if err != nil {
		return nil, err
	}
	keys := make(map[subjectRef]subjectKey, len(subjects))
	if err := p.readKeys(ctx, query, sqls.keys, arg, keys); err != nil {
		return nil, fmt.Errorf("auditkit: creating the keys of %d data subjects: %w", len(subjects), err)
	}
	if len(keys) < len(subjects) {
		if err := p.readKeys(ctx, query, sqls.active, arg, keys); err != nil {
			return nil, fmt.Errorf("auditkit: reading the keys of %d data subjects: %w", len(subjects), err)
		}
	}
	out := make([][]any, len(rows))
	for i, row := range rows {
		pl := plans[i]
		if !pl.actor && !pl.resource {
			out[i] = row
			continue
		}
		row = slices.Clone(row)
		if err := p.encryptRow(row, pl, keys); err != nil {
			return nil, &RejectedError{Index: i, Err: err}
		}
		out[i] = row
	}
	return out, nil
}

// encryptRow replaces the personal values of row (a copy) as plan says.
func (p *PIICipher) encryptRow(row []any, pl rowPlan, keys map[subjectRef]subjectKey) error {
	var rid [36]byte
	encodeUUID(rid[:], row[colID].(uuid.UUID))
	recordID := string(rid[:])
	tenant := tenantKeyOf(row)
	if pl.actor {
		ref := subjectRef{tenant, ActorSubject(row[colActorID].(string))}
		k, ok := keys[ref]
		if !ok {
			return fmt.Errorf("%w %q", ErrNoSubjectKey, ref.subject)
		}
		for _, col := range []int{colActorEmail, colUserAgent} {
			if s, ok := row[col].(string); ok {
				row[col] = encryptWith(k.aead, k.id, recordID, Columns[col], []byte(s))
			}
		}
		if row[colIP] != nil {
			var host []byte
			if pfx, ok := row[colIP].(netip.Prefix); ok {
				host = appendHost(nil, pfx.Addr())
			} else {
				host = fmt.Append(nil, row[colIP])
			}
			enc := encryptWith(k.aead, k.id, recordID, "ip", host)
			meta, err := setJSONKey(row[colMetadata], IPEncryptedKey, enc)
			if err != nil {
				return fmt.Errorf("column metadata: %w", err)
			}
			row[colMetadata] = meta
			row[colIP] = nil
		}
	}
	if pl.resource {
		typ, _ := row[colResourceType].(string)
		ref := subjectRef{tenant, ResourceSubject(typ, row[colResourceID].(string))}
		k, ok := keys[ref]
		if !ok {
			return fmt.Errorf("%w %q", ErrNoSubjectKey, ref.subject)
		}
		for j, col := range []int{colBefore, colAfter, colDiff} {
			m := pl.images[j]
			if m == nil {
				continue
			}
			name := Columns[col]
			for f, v := range m {
				if !p.fields[strings.ToLower(f)] || isJSONNull(v) {
					continue
				}
				if col != colDiff {
					m[f] = jsonString(encryptWith(k.aead, k.id, recordID, name+"."+f, v))
					continue
				}
				var ch map[string]json.RawMessage
				if err := json.Unmarshal(v, &ch); err != nil {
					m[f] = jsonString(encryptWith(k.aead, k.id, recordID, name+"."+f, v))
					continue
				}
				for _, side := range []string{"from", "to"} {
					if sv, ok := ch[side]; ok && !isJSONNull(sv) {
						ch[side] = jsonString(encryptWith(k.aead, k.id, recordID, name+"."+f+"."+side, sv))
					}
				}
				b, err := json.Marshal(ch)
				if err != nil {
					return err
				}
				m[f] = b
			}
			b, err := json.Marshal(m)
			if err != nil {
				return fmt.Errorf("column %s: %w", name, err)
			}
			row[col] = b
		}
	}
	return nil
}

func jsonString(s string) json.RawMessage { return appendJSONString(nil, s) }

// setJSONKey returns the JSON object doc ([]byte or nil) with key set to the string v.
func setJSONKey(doc any, key, v string) ([]byte, error) {
	m := map[string]json.RawMessage{}
	if b, _ := doc.([]byte); b != nil {
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
	}
	m[key] = jsonString(v)
	return json.Marshal(m)
}

// EraseResult is what EraseSubject did.
type EraseResult struct {
	// Keys is the number of the subject's keys destroyed.
	Keys int `json:"keys"`
	// Records is the number of the tenant's records holding values under those keys, which are
	// now unreadable.
	Records int64 `json:"records"`
	// KeyIDs are the ids of the destroyed keys.
	KeyIDs []string `json:"key_ids"`
}

// EraseSubject erases a data subject of a tenant (tenantKey "" for records without a tenant) by
// crypto-shredding: in one transaction it destroys the subject's keys (wrapped_key set to NULL,
// erased_at to now), counts the records that hold values under them and writes a record of the
// erasure (action SubjectErasedAction; metadata: subject, key ids and that count, never a value),
// chained, with the actor ctx carries (WithActor). No other record changes, so the hash chain
// still verifies; the erased values can no longer be decrypted by anyone. The subject's next
// record gets a new key. Counting scans the tenant's records.
func EraseSubject(ctx context.Context, pool *pgxpool.Pool, schema, tenantKey, subject string) (EraseResult, error) {
	if schema == "" {
		schema = DefaultSchema
	}
	if subject == "" {
		return EraseResult{}, errors.New("auditkit: no subject to erase")
	}
	keys := pgx.Identifier{schema, "audit_subject_keys"}.Sanitize()
	logs := pgx.Identifier{schema, "audit_logs"}.Sanitize()
	res := EraseResult{KeyIDs: []string{}}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE `+keys+` SET wrapped_key = NULL, erased_at = now() `+
			`WHERE tenant_key = $1 AND subject = $2 AND erased_at IS NULL RETURNING key_id`, tenantKey, subject)
		if err != nil {
			return err
		}
		if res.KeyIDs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		slices.Sort(res.KeyIDs)
		res.Keys = len(res.KeyIDs)
		if res.Records, err = countUnderKeys(ctx, tx, logs, tenantKey, res.KeyIDs); err != nil {
			return err
		}
		e := Entry{
			Action: SubjectErasedAction, Severity: SeverityWarning, Tenant: Tenant{ID: tenantKey},
			ResourceType: "audit_subject", ResourceID: subject,
			Metadata: map[string]any{"subject": subject, "key_ids": res.KeyIDs, "records": res.Records},
		}
		_, err = LogTx(ctx, PgxExecer(tx), NewTxWriter(schema, nil), e)
		return err
	})
	if err != nil {
		return EraseResult{}, fmt.Errorf("auditkit: erasing subject %q: %w", subject, err)
	}
	return res, nil
}

// PreviewErasure returns what EraseSubject would erase now, changing nothing: the subject's keys
// not erased yet and the number of records holding values under them.
func PreviewErasure(ctx context.Context, pool *pgxpool.Pool, schema, tenantKey, subject string) (EraseResult, error) {
	if schema == "" {
		schema = DefaultSchema
	}
	keys := pgx.Identifier{schema, "audit_subject_keys"}.Sanitize()
	logs := pgx.Identifier{schema, "audit_logs"}.Sanitize()
	rows, err := pool.Query(ctx, `SELECT key_id FROM `+keys+` WHERE tenant_key = $1 AND subject = $2 AND erased_at IS NULL ORDER BY key_id`, tenantKey, subject)
	if err != nil {
		return EraseResult{}, err
	}
	res := EraseResult{}
	if res.KeyIDs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return EraseResult{}, err
	}
	res.Keys = len(res.KeyIDs)
	if res.Records, err = countUnderKeys(ctx, pool, logs, tenantKey, res.KeyIDs); err != nil {
		return EraseResult{}, err
	}
	return res, nil
}

// countUnderKeys counts the records of a tenant that hold a value encrypted under one of ids,
// scanning the tenant's records.
func countUnderKeys(ctx context.Context, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, logs, tenantKey string, ids []string) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	pats := make([]string, len(ids))
	for i, id := range ids {
		pats[i] = "%" + EncryptedPrefix + id + ":%"
	}
	var n int64
	err := db.QueryRow(ctx, `SELECT count(*) FROM `+logs+` WHERE coalesce(tenant_id, '') = $1 AND (`+
		`actor_email LIKE ANY($2) OR user_agent LIKE ANY($2) OR metadata->>'`+IPEncryptedKey+`' LIKE ANY($2) `+
		`OR before::text LIKE ANY($2) OR after::text LIKE ANY($2) OR diff::text LIKE ANY($2))`, tenantKey, pats).Scan(&n)
	return n, err
}
