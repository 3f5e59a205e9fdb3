package auditmw

import (
	"sync"
	"time"
)

// Defaults of the verified-token cache (WithTokenCache).
const (
	DefaultTokenCacheTTL  = 10 * time.Second
	DefaultTokenCacheSize = 4096
	// maxCachedTokenBytes keeps the cache's memory bounded (size × this, 16 MiB by default);
	// longer tokens are verified every time.
	maxCachedTokenBytes = 4 << 10
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
	return func(o *verifierOptions) {
		o.cacheTTL = ttl
		if size > 0 {
			o.cacheSize = size
		}
	}
}

type tokenCache struct {
	ttl  time.Duration
	size int
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]cachedIdentity
}

type cachedIdentity struct {
	id    Identity
	until time.Time
}

func newTokenCache(ttl time.Duration, size int, now func() time.Time) *tokenCache {
	if ttl <= 0 {
		return nil
	}
	return &tokenCache{ttl: ttl, size: size, now: now, entries: make(map[string]cachedIdentity)}
}

// get returns the identity remembered for raw, if it has not expired.
func (c *tokenCache) get(raw string) (Identity, bool) {
	if c == nil {
		return Identity{}, false
	}
	c.mu.Lock()
	e, ok := c.entries[raw]
	c.mu.Unlock()
	if !ok || !c.now().Before(e.until) {
		return Identity{}, false
	}
	return e.id, true
}

// put remembers a verified identity until the earlier of ttl from now and the token's expiry.
func (c *tokenCache) put(raw string, id Identity, leeway time.Duration) {
	if c == nil || len(raw) > maxCachedTokenBytes {
		return
	}
	now := c.now()
	until := now.Add(c.ttl)
	if !id.ExpiresAt.IsZero() {
		until = minTime(until, id.ExpiresAt.Add(leeway))
	}
	if !now.Before(until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.size {
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries { // still full: drop arbitrary entries (map order is random)
			if len(c.entries) < c.size {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[raw] = cachedIdentity{id: id, until: until}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
