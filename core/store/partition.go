package store

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/schema"
)

// PartitionInfo describes one partition of a partitioned audit_logs.
type PartitionInfo struct {
	Name string `json:"name"`
	// From and To bound the occurred_at of its records (From <= occurred_at < To); zero for the
	// default partition.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Default is true for the default partition, which takes the records no other partition
	// covers.
	Default bool `json:"default"`
	// EstimatedRows is PostgreSQL's estimate (pg_class.reltuples, as of the last ANALYZE or
	// VACUUM); -1 when it has none yet.
	EstimatedRows int64 `json:"estimated_rows"`
	// Bytes is the partition's size on disk with its indexes.
	Bytes int64 `json:"bytes"`
}

// Partitions lists the partitions of audit_logs in time order, the default partition last. It
// is empty when audit_logs is not partitioned.
func (s *Store) Partitions(ctx context.Context) ([]PartitionInfo, error) {
	parts, err := schema.Partitions(ctx, s.pool, schema.WithSchema(s.schema))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	out := make([]PartitionInfo, 0, len(parts))
	for _, p := range parts {
		info := PartitionInfo{Name: p.Name, From: p.From, To: p.To, Default: p.Default}
		err := s.pool.QueryRow(ctx, `SELECT c.reltuples::bigint, pg_total_relation_size(c.oid) FROM pg_class c WHERE c.oid = to_regclass($1)`,
			s.q(p.Name)).Scan(&info.EstimatedRows, &info.Bytes)
		if err != nil {
			return nil, fmt.Errorf("store: partition %s: %w", p.Name, err)
		}
		out = append(out, info)
	}
	return out, nil
}

// DefaultPartitionReport describes the records in the default partition of audit_logs.
type DefaultPartitionReport struct {
	// Partitioned is false when audit_logs is not partitioned (the other fields are then zero).
	Partitioned bool `json:"partitioned"`
	// Rows counts the records in the default partition, Held those of tenants under legal hold
	// (kept there when their partition was dropped). The others are strays: records whose time
	// no partition covers (far in the past or future), which partition drops cannot remove;
	// schema.CreatePartitions moves them into partitions.
	Rows int64 `json:"rows"`
	Held int64 `json:"held"`
	// Oldest and Newest bound the occurred_at of the strays; nil when there are none.
	Oldest *time.Time `json:"oldest,omitempty"`
	Newest *time.Time `json:"newest,omitempty"`
}

// DefaultPartition reports what the default partition of audit_logs holds. It counts the rows,
// so it costs a scan of that partition (normally small).
func (s *Store) DefaultPartition(ctx context.Context) (DefaultPartitionReport, error) {
	def, err := s.defaultPartition(ctx)
	if err != nil || def == "" {
		return DefaultPartitionReport{}, err
	}
	r := DefaultPartitionReport{Partitioned: true}
	err = s.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE `+s.heldSQL("d.tenant_id")+`),
			min(occurred_at) FILTER (WHERE NOT `+s.heldSQL("d.tenant_id")+`),
			max(occurred_at) FILTER (WHERE NOT `+s.heldSQL("d.tenant_id")+`)
		FROM `+s.q(def)+` d`).Scan(&r.Rows, &r.Held, &r.Oldest, &r.Newest)
	if err != nil {
		return DefaultPartitionReport{}, fmt.Errorf("store: default partition: %w", err)
	}
	return r, nil
}

// defaultPartition returns the name of the default partition of audit_logs, "" when audit_logs
// is not partitioned.
func (s *Store) defaultPartition(ctx context.Context) (string, error) {
	parts, err := schema.Partitions(ctx, s.pool, schema.WithSchema(s.schema))
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	for _, p := range parts {
		if p.Default {
			return p.Name, nil
		}
	}
	return "", nil
}

// PartitionDropOptions configure DropPartitions.
type PartitionDropOptions struct {
	// ArchiveDir, when set, receives an archive of each partition before it is dropped:
	// <schema>.<partition>.ndjson.gz, every record as one JSON object per line (the columns of
	// audit_logs, in occurred_at and id order), gzip-compressed, and
	// <schema>.<partition>.manifest.json (PartitionManifest). Both are written to temporary
	// files, synced and renamed before the partition is dropped. The directory must exist.
	ArchiveDir string
	// LockTimeout bounds each wait for the ACCESS EXCLUSIVE lock on audit_logs that detaching a
	// partition takes (readers and writers queue behind it); a wait that times out is retried
	// up to 20 times. Zero means 500ms.
	LockTimeout time.Duration
}

// PartitionDrop reports one dropped partition.
type PartitionDrop struct {
	Partition string    `json:"partition"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	// Rows is how many records the partition held, Kept how many of them were moved to the
	// default partition instead of being dropped (tenants under legal hold, and tenants whose own
	// retention window keeps them).
	Rows int64 `json:"rows"`
	Kept int64 `json:"kept"`
	// Archive and Manifest are the paths of the archive files, when ArchiveDir was set.
	Archive  string `json:"archive,omitempty"`
	Manifest string `json:"manifest,omitempty"`
}

// PartitionManifest describes the archive of a dropped partition.
type PartitionManifest struct {
	Version   int    `json:"version"` // 1
	Schema    string `json:"schema"`
	Partition string `json:"partition"`
	// From and To are the partition's bounds; Oldest and Newest the occurred_at of its first
	// and last record (nil when it was empty).
	From   time.Time  `json:"from"`
	To     time.Time  `json:"to"`
	Oldest *time.Time `json:"oldest,omitempty"`
	Newest *time.Time `json:"newest,omitempty"`
	Rows   int64      `json:"rows"`
	// File is the archive's base name, FileSHA256 the SHA-256 of its bytes (compressed), hex.
	File       string `json:"file"`
	FileSHA256 string `json:"file_sha256"`
	// Chains are the ranges of the hash chains whose records the partition held.
	Chains    []PartitionChainRange `json:"chains"`
	CreatedAt time.Time             `json:"created_at"`
}

// PartitionChainRange is the part of one hash chain held by an archived partition. Records of
// one chain in a partition need not be contiguous (a late record may sit in an earlier
// partition): Rows tells how many of FromSeq..ToSeq it holds.
type PartitionChainRange struct {
	TenantKey string `json:"tenant_key"`
	FromSeq   int64  `json:"from_seq"`
	ToSeq     int64  `json:"to_seq"`
	Rows      int64  `json:"rows"`
	// FirstPrevHash is the prev_hash of the record at FromSeq and LastRowHash the row_hash of the
	// record at ToSeq, hex.
	FirstPrevHash string `json:"first_prev_hash"`
	LastRowHash   string `json:"last_row_hash"`
	// Checkpoint is the chain's latest signed checkpoint at or before ToSeq, if any.
	Checkpoint *core.Checkpoint `json:"checkpoint,omitempty"`
}

// ErrNotPartitioned is returned by DropPartitions when audit_logs is not partitioned.
var ErrNotPartitioned = errors.New("store: audit_logs is not partitioned (convert it with auditkit migrate -partition)")

// DropPartitions drops the partitions of audit_logs whose whole range ends at or before before,
// oldest first, each in one transaction, and reports them. It is retention without row deletes:
// the cost of a drop does not grow with the rows.
//
// Nothing under legal hold is lost: the records of held tenants, and those of tenants whose own
// retention window (retention_days) still keeps them, are moved to the default partition in the
// same transaction, where they stay visible to every query (DefaultPartition counts them). The
// chains whose first records were dropped get a signed truncation anchor (Options.SigningKey),
// as with Cleanup, and the retention marks move: RetainedFrom of a tenant under the default
// policy is then at least the partition's upper bound.
//
// With ArchiveDir, each partition is first archived as gzip-compressed NDJSON with a manifest
// (PartitionManifest). The partition is locked against writes (SHARE) from before the archive
// until the drop commits, so a late record cannot slip in between. The ACCESS EXCLUSIVE lock on
// audit_logs that the detach needs is taken last and held only for the detach, the move of the
// kept records and the drop.
func (s *Store) DropPartitions(ctx context.Context, before time.Time, opts PartitionDropOptions) ([]PartitionDrop, error) {
	if before.IsZero() {
		return nil, paramErr("before", "is required")
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 500 * time.Millisecond
	}
	if opts.ArchiveDir != "" {
		if st, err := os.Stat(opts.ArchiveDir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("store: archive directory %q: not a directory (%v)", opts.ArchiveDir, err)
		}
	}
	parts, err := schema.Partitions(ctx, s.pool, schema.WithSchema(s.schema))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if len(parts) == 0 {
		return nil, ErrNotPartitioned
	}
	def := ""
	for _, p := range parts {
		if p.Default {
			def = p.Name
		}
	}
	var out []PartitionDrop
	for _, p := range parts {
		if p.Default || p.To.After(before) {
			continue
		}
		d, err := s.dropPartition(ctx, p, def, opts)
		if err != nil {
			return out, fmt.Errorf("store: dropping partition %s: %w", p.Name, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func (s *Store) dropPartition(ctx context.Context, p schema.Partition, def string, opts PartitionDropOptions) (PartitionDrop, error) {
	d := PartitionDrop{Partition: p.Name, From: p.From, To: p.To}
	part := s.q(p.Name)
	// Kept: tenants under legal hold, and tenants whose own window still covers the record.
	keep := `(` + s.heldSQL("p.tenant_id") + ` OR EXISTS (SELECT 1 FROM ` + s.tenants + ` o
		WHERE o.id = p.tenant_id AND o.retention_days IS NOT NULL
		  AND p.occurred_at >= now() - o.retention_days * interval '1 day'))`
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '10s'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE `+part+` IN SHARE MODE`); err != nil {
			return err
		}
		if opts.ArchiveDir != "" {
			if err := s.archivePartition(ctx, tx, p, opts.ArchiveDir, &d); err != nil {
				return fmt.Errorf("archive: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE auditkit_kept ON COMMIT DROP AS SELECT * FROM `+part+` p WHERE `+keep); err != nil {
			return err
		}
		// The chains that lose records, and the tenants with their own window that do.
		rows, err := tx.Query(ctx, `SELECT coalesce(p.tenant_id, ''), bool_or(p.seq IS NOT NULL), count(*),
				min(now() - o.retention_days * interval '1 day')
			FROM `+part+` p LEFT JOIN `+s.tenants+` o ON o.id = p.tenant_id AND o.retention_days IS NOT NULL
			WHERE NOT `+keep+` GROUP BY 1`)
		if err != nil {
			return err
		}
		chains := map[string]bool{}
		windows := map[string]time.Time{}
		var (
			key     string
			chained bool
			n       int64
			cutoff  *time.Time
		)
		if _, err := pgx.ForEachRow(rows, []any{&key, &chained, &n, &cutoff}, func() error {
			d.Rows += n
			if chained {
				chains[key] = true
			}
			if cutoff != nil {
				windows[key] = *cutoff
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM auditkit_kept`).Scan(&d.Kept); err != nil {
			return err
		}
		d.Rows += d.Kept
		if d.Kept > 0 && def == "" {
			return errors.New("it holds records that must be kept and audit_logs has no default partition to keep them in")
		}
		if err := s.lockLogs(ctx, tx, opts.LockTimeout); err != nil {
			return err
		}
		stmts := []string{`ALTER TABLE ` + s.logs + ` DETACH PARTITION ` + part}
		if d.Kept > 0 {
			// Straight into the default partition (not through audit_logs), so that live streams
			// are not told about them again.
			stmts = append(stmts, `INSERT INTO `+s.q(def)+` SELECT * FROM auditkit_kept`)
		}
		stmts = append(stmts, `DROP TABLE `+part)
		for _, st := range stmts {
			if _, err := tx.Exec(ctx, st); err != nil {
				return err
			}
		}
		if err := s.anchorTruncations(ctx, tx, slices.Sorted(maps.Keys(chains))); err != nil {
			return err
		}
		if err := s.markRetained(ctx, tx, "*", p.To); err != nil {
			return err
		}
		for key, cutoff := range windows {
			at := p.To
			if cutoff.Before(at) {
				at = cutoff
			}
			if err := s.markRetained(ctx, tx, key, at); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return PartitionDrop{}, err
	}
	return d, nil
}

// lockLogs takes the ACCESS EXCLUSIVE lock on audit_logs in tx, waiting at most timeout each
// time and trying up to 20 times (rolling back to a savepoint in between, so that the work done
// in tx so far is kept).
func (s *Store) lockLogs(ctx context.Context, tx pgx.Tx, timeout time.Duration) error {
	for attempt := 1; ; attempt++ {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		_, err = sp.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, fmt.Sprintf("%dms", timeout.Milliseconds()))
		if err == nil {
			_, err = sp.Exec(ctx, `LOCK TABLE `+s.logs+` IN ACCESS EXCLUSIVE MODE`)
		}
		if err == nil {
			if _, err := sp.Exec(ctx, `SELECT set_config('lock_timeout', '10s', true)`); err != nil {
				return err
			}
			return sp.Commit(ctx) // releases the savepoint, keeps the lock
		}
		_ = sp.Rollback(ctx)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55P03" || attempt >= 20 {
			return fmt.Errorf("locking audit_logs: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
		}
	}
}

// archivePartition writes the archive and manifest of partition p into dir, within tx (which
// holds the partition locked against writes).
func (s *Store) archivePartition(ctx context.Context, tx pgx.Tx, p schema.Partition, dir string, d *PartitionDrop) error {
	base := s.schema + "." + p.Name
	m := PartitionManifest{Version: 1, Schema: s.schema, Partition: p.Name, From: p.From, To: p.To,
		File: base + ".ndjson.gz", Chains: []PartitionChainRange{}, CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) //nolint:errcheck // gone after the rename
	defer f.Close()           //nolint:errcheck // closed and checked below
	sum := sha256.New()
	zw := gzip.NewWriter(io.MultiWriter(f, sum))
	bw := bufio.NewWriterSize(zw, 64<<10)
	rows, err := tx.Query(ctx, `SELECT to_jsonb(p)::text, p.occurred_at FROM `+s.q(p.Name)+` p ORDER BY p.occurred_at, p.id`)
	if err != nil {
		return err
	}
	var line []byte
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&line, &at}, func() error {
		if m.Rows == 0 {
			first := at.UTC()
			m.Oldest = &first
		}
		m.Rows++
		bw.Write(line)            //nolint:errcheck // checked at Flush
		return bw.WriteByte('\n') //nolint:errcheck // checked at Flush
	})
	if err != nil {
		return err
	}
	if m.Rows > 0 {
		last := at.UTC()
		m.Newest = &last
	}
	if err := errors.Join(bw.Flush(), zw.Close()); err != nil {
		return err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	m.FileSHA256 = hex.EncodeToString(sum.Sum(nil))

	crows, err := tx.Query(ctx, `SELECT k, min(seq), max(seq), count(*),
			(array_agg(prev_hash ORDER BY seq))[1], (array_agg(row_hash ORDER BY seq DESC))[1]
		FROM (SELECT coalesce(tenant_id, '') AS k, seq, prev_hash, row_hash FROM `+s.q(p.Name)+` WHERE seq IS NOT NULL) c
		GROUP BY k ORDER BY k`)
	if err != nil {
		return err
	}
	var c PartitionChainRange
	var prev, last []byte
	if _, err := pgx.ForEachRow(crows, []any{&c.TenantKey, &c.FromSeq, &c.ToSeq, &c.Rows, &prev, &last}, func() error {
		c.FirstPrevHash, c.LastRowHash = hex.EncodeToString(prev), hex.EncodeToString(last)
		m.Chains = append(m.Chains, c)
		return nil
	}); err != nil {
		return err
	}
	for i := range m.Chains {
		cp, err := core.ManifestCheckpoint(ctx, s.pool, s.schema, m.Chains[i].TenantKey, m.Chains[i].ToSeq)
		if err != nil {
			return err
		}
		m.Chains[i].Checkpoint = cp
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	archive, manifest := filepath.Join(dir, m.File), filepath.Join(dir, base+".manifest.json")
	if err := os.Rename(f.Name(), archive); err != nil {
		return err
	}
	if err := writeFileSync(manifest, append(mb, '\n')); err != nil {
		return err
	}
	if dh, err := os.Open(dir); err == nil {
		_ = dh.Sync()
		_ = dh.Close()
	}
	d.Archive, d.Manifest = archive, manifest
	return nil
}

// writeFileSync writes b to path through a synced temporary file and a rename.
func writeFileSync(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) //nolint:errcheck // gone after the rename
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
