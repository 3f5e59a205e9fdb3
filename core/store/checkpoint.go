package store

import (
	"context"

	"github.com/auditkit/auditkit/core"
)

// Checkpoints returns the signed checkpoints (of both kinds) of one tenant's hash chain with
// fromSeq <= seq <= toSeq, ordered by seq, at most limit of them when limit is positive. The
// checkpoints table is outside row-level security; the tenant is named explicitly.
func (s *Store) Checkpoints(ctx context.Context, tenantID string, fromSeq, toSeq int64, limit int) ([]core.Checkpoint, error) {
	if err := ValidateTenantID("tenant_id", tenantID); err != nil {
		return nil, err
	}
	return core.LoadCheckpointRange(ctx, s.pool, s.schema, tenantID, fromSeq, toSeq, limit)
}
