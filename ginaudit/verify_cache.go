package ginaudit

import (
	"time"

	"github.com/auditkit/auditkit/httpaudit"
)

// Defaults of the verified-token cache (WithTokenCache).
const (
	DefaultTokenCacheTTL  = httpaudit.DefaultTokenCacheTTL
	DefaultTokenCacheSize = httpaudit.DefaultTokenCacheSize
)

// WithTokenCache sets how long a verified token is remembered and how many are kept. A client
// sends the same token with every request, and a request passing both Middleware and MountAPI
// presents it twice: a hit costs a map lookup instead of a signature check (~10 µs and ~70
// allocations for HS256 here, more for RSA). Only successful verifications are remembered, never
// past the token's exp (plus the leeway). The cache is keyed on the token text, which is safe
// because only tokens in their one canonical spelling verify (strict base64url, see Verifier): a
// padded or otherwise respelled copy of a cached token is never a hit and is refused. With a
// JWKS, a hit is accepted only while the token's kid is still in the key set as a signing key for
// the token's algorithm, so withdrawing a key (or republishing it for encryption) takes effect at
// the next refresh as without the cache; tokens without a kid are not cached. ttl <= 0 disables
// the cache. Defaults 10s and 4096 tokens.
func WithTokenCache(ttl time.Duration, size int) VerifierOption {
	return httpaudit.WithTokenCache(ttl, size)
}
