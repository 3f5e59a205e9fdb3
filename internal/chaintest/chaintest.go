// Package chaintest writes hash-chained audit_logs rows for tests and benchmarks: each row's
// canonical fields are built in Go exactly as PostgreSQL returns them through core.ChainSQL, and
// hashed with core.ChainHash, so that a correct verifier finds the chain intact.
package chaintest

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
)

// Columns are the audit_logs columns Source fills.
var Columns = []string{"id", "occurred_at", "kind", "action", "severity", "tenant_id", "actor_id", "actor_type",
	"resource_type", "resource_id", "diff", "request_id", "ip", "version", "seq", "prev_hash", "row_hash"}

// base is the instant of seq 0; seq k happens k milliseconds and k microseconds later.
var base = time.Date(2026, 3, 1, 12, 30, 15, 0, time.UTC)

var ip = netip.MustParsePrefix("203.0.113.7/32")

// Row returns the values of the record at seq of tenantKey's chain after prev (in Columns order)
// and its row hash.
func Row(tenantKey string, seq int64, prev [32]byte) ([]any, [32]byte) {
	return row(tenantKey, seq, prev, "invoice.update")
}

// Forged returns, like Row, a record at seq after prev with a valid hash, but with another id and
// action than Row's: what someone who can write to the database and compute hashes could insert.
func Forged(tenantKey string, seq int64, prev [32]byte) ([]any, [32]byte) {
	return row(tenantKey, seq, prev, "invoice.forged")
}

func row(tenantKey string, seq int64, prev [32]byte, action string) ([]any, [32]byte) {
	var f core.ChainFields
	id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(action+"/"+tenantKey+"/"+strconv.FormatInt(seq, 10)))
	at := base.Add(time.Duration(seq) * (time.Millisecond + time.Microsecond))
	resource := strconv.FormatInt(seq%1000, 10)
	diff := `{"total": {"to": ` + strconv.FormatInt(seq, 10) + `, "from": 10}}`
	req := "req-" + strconv.FormatInt(seq, 10)
	f[0] = []byte(tenantKey)
	f[1] = strconv.AppendInt(nil, seq, 10)
	f[2] = append([]byte(nil), prev[:]...)
	f[3] = []byte(id.String())
	f[4] = strconv.AppendInt(nil, at.UnixMicro(), 10)
	f[5] = []byte("update")
	f[6] = []byte(action)
	f[7] = []byte("info")
	var tenant any
	if tenantKey != "" {
		f[8] = []byte(tenantKey)
		tenant = tenantKey
	}
	f[10] = []byte("u-7")
	f[11] = []byte("tenant_user")
	f[14] = []byte("invoices")
	f[15] = []byte(resource)
	f[18] = []byte(diff)
	f[19] = []byte(req)
	f[26] = []byte("203.0.113.7")
	f[31] = []byte("2")
	h := core.ChainHash(&f)
	return []any{id, at, "update", action, "info", tenant, "u-7", "tenant_user", "invoices", resource,
		[]byte(diff), req, ip, int16(2), seq, prev[:], h[:]}, h
}

// Source returns a COPY source of n records of tenantKey's chain from seq from on, after prev; last
// holds the row hash of the latest record produced.
func Source(tenantKey string, from int64, prev [32]byte, n int, last *[32]byte) pgx.CopyFromSource {
	i := 0
	*last = prev
	var vals []any
	return pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		vals, *last = Row(tenantKey, from+int64(i), *last)
		i++
		return vals, nil
	})
}

// Append writes n more records at the end of tenantKey's chain in the schema of pool's
// search_path and moves its head, in one transaction. It returns the new head's hash.
func Append(ctx context.Context, pool *pgxpool.Pool, tenantKey string, n int) ([32]byte, error) {
	var last [32]byte
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var seq int64
		var h []byte
		err := tx.QueryRow(ctx, `SELECT seq, row_hash FROM audit_chain_heads WHERE tenant_key = $1 FOR UPDATE`, tenantKey).Scan(&seq, &h)
		if err != nil && err != pgx.ErrNoRows {
			return err
		}
		var prev [32]byte
		copy(prev[:], h)
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_logs"}, Columns, Source(tenantKey, seq+1, prev, n, &last)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO audit_chain_heads (tenant_key, seq, row_hash) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_key) DO UPDATE SET seq = excluded.seq, row_hash = excluded.row_hash, updated_at = now()`,
			tenantKey, seq+int64(n), last[:])
		return err
	})
	if err != nil {
		return last, fmt.Errorf("chaintest: append %d records to chain %q: %w", n, tenantKey, err)
	}
	return last, nil
}
