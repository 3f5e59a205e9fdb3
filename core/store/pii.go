package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/auditkit/auditkit/core"
)

// encKeyIDs finds the key ids of the encrypted values in a column's text or JSON.
var encKeyIDs = regexp.MustCompile(regexp.QuoteMeta(core.EncryptedPrefix) + `([0-9a-f]+):`)

// subjectKey is one subject key as a read found it: usable (key set), erased (wrapped key gone or
// the key row deleted), or unusable (another master key, another tenant), whose values are then
// shown as stored.
type subjectKey struct {
	key    []byte
	tenant string
	erased bool
}

// decryptRecords replaces the encrypted values of recs (core.EncryptedPrefix) with their plain
// values when the store has Options.PII, and with core.ErasedValue when their subject was erased.
// The keys are read with one statement on db, in the caller's scope, and unwrapped for this call
// only: nothing is cached, so an erasure takes effect on the next read. Without Options.PII the
// values stay as stored.
func (s *Store) decryptRecords(ctx context.Context, db querier, recs ...*Record) error {
	if s.opts.PII == nil || len(recs) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var ids []string
	collect := func(b []byte) {
		if !bytes.Contains(b, []byte(core.EncryptedPrefix)) {
			return
		}
		for _, m := range encKeyIDs.FindAllSubmatch(b, -1) {
			if id := string(m[1]); !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	for _, r := range recs {
		collect([]byte(r.ActorEmail))
		collect([]byte(r.UserAgent))
		collect(r.Metadata)
		collect(r.Before)
		collect(r.After)
		collect(r.Diff)
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := db.Query(ctx, `SELECT key_id, tenant_key, subject, wrapped_key FROM `+s.subjectKeys+` WHERE key_id = ANY($1)`, ids)
	if err != nil {
		return fmt.Errorf("reading subject keys: %w", err)
	}
	keys := make(map[string]*subjectKey, len(ids))
	for rows.Next() {
		var (
			id, tenant, subject string
			wrapped             []byte
		)
		if err := rows.Scan(&id, &tenant, &subject, &wrapped); err != nil {
			rows.Close()
			return err
		}
		k := &subjectKey{tenant: tenant, erased: wrapped == nil}
		if wrapped != nil {
			if k.key, err = s.opts.PII.UnwrapKey(tenant, subject, id, wrapped); err != nil {
				s.log.Warn("store: a subject key cannot be unwrapped with the configured master key; its values are shown encrypted",
					"key_id", id, "err", err)
			}
		}
		keys[id] = k
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range recs {
		d := decrypter{keys: keys, recordID: r.ID.String(), tenant: r.TenantID}
		r.ActorEmail = d.text("actor_email", r.ActorEmail)
		r.UserAgent = d.text("user_agent", r.UserAgent)
		r.Before = d.image("before", r.Before, false)
		r.After = d.image("after", r.After, false)
		r.Diff = d.image("diff", r.Diff, true)
		if bytes.Contains(r.Metadata, []byte(`"`+core.IPEncryptedKey+`"`)) {
			var m map[string]json.RawMessage
			var enc string
			if json.Unmarshal(r.Metadata, &m) == nil && json.Unmarshal(m[core.IPEncryptedKey], &enc) == nil {
				if ip, ok := d.value("ip", enc); ok {
					r.IP = string(ip)
					delete(m, core.IPEncryptedKey)
					r.Metadata = nil
					if len(m) > 0 {
						r.Metadata, _ = json.Marshal(m)
					}
				}
			}
		}
	}
	return nil
}

// decrypter decrypts the values of one record.
type decrypter struct {
	keys             map[string]*subjectKey
	recordID, tenant string
}

// value returns the plain bytes of the encrypted value v of field, ErasedValue when its key was
// erased, and false when v is not an encrypted value or cannot be decrypted here.
func (d decrypter) value(field, v string) ([]byte, bool) {
	id, ok := core.EncryptedKeyID(v)
	if !ok {
		return nil, false
	}
	k := d.keys[id]
	switch {
	case k == nil || k.erased:
		return []byte(core.ErasedValue), true
	case k.key == nil || k.tenant != d.tenant:
		return nil, false
	}
	plain, err := core.DecryptValue(k.key, d.recordID, field, v)
	if err != nil {
		return nil, false
	}
	return plain, true
}

func (d decrypter) text(field, v string) string {
	if plain, ok := d.value(field, v); ok {
		return string(plain)
	}
	return v
}

// jsonValue returns the JSON value stored for the encrypted JSON string raw, or raw itself.
func (d decrypter) jsonValue(field string, raw json.RawMessage) json.RawMessage {
	if !bytes.HasPrefix(raw, []byte(`"`+core.EncryptedPrefix)) {
		return raw
	}
	var v string
	if json.Unmarshal(raw, &v) != nil {
		return raw
	}
	plain, ok := d.value(field, v)
	switch {
	case !ok:
		return raw
	case string(plain) == core.ErasedValue:
		b, _ := json.Marshal(core.ErasedValue)
		return b
	}
	return plain
}

// image decrypts the top-level values of a row image, or with diff the from and to of each change.
func (d decrypter) image(col string, doc json.RawMessage, diff bool) json.RawMessage {
	if !bytes.Contains(doc, []byte(core.EncryptedPrefix)) {
		return doc
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(doc, &m) != nil {
		return doc
	}
	for k, v := range m {
		if !diff {
			m[k] = d.jsonValue(col+"."+k, v)
			continue
		}
		var ch map[string]json.RawMessage
		if json.Unmarshal(v, &ch) != nil {
			m[k] = d.jsonValue(col+"."+k, v)
			continue
		}
		for _, side := range []string{"from", "to"} {
			if sv, ok := ch[side]; ok {
				ch[side] = d.jsonValue(col+"."+k+"."+side, sv)
			}
		}
		m[k], _ = json.Marshal(ch)
	}
	out, err := json.Marshal(m)
	if err != nil {
		return doc
	}
	return out
}

// EraseSubject erases a data subject of a tenant (core.EraseSubject, in the Store's schema): the
// subject's keys are destroyed, and a record of the erasure is written in the same transaction
// with the actor ctx carries (core.WithActor).
func (s *Store) EraseSubject(ctx context.Context, tenantID, subject string) (core.EraseResult, error) {
	if tenantID != "" {
		if err := core.ValidateTenantID(tenantID); err != nil {
			return core.EraseResult{}, fmt.Errorf("%w: %w", ErrInvalidScope, err)
		}
	}
	return core.EraseSubject(ctx, s.pool, s.schema, tenantID, subject)
}
