package auditmw

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/auditkit/auditkit/core"
)

const cacheTestSecret = "0123456789abcdef0123456789abcdef"

func cacheTestToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(cacheTestSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifierCacheRemembersOnlyValidTokensAndNotPastExpiry(t *testing.T) {
	ctx := context.Background()
	v, err := NewVerifier(ctx, core.JWTConfig{Secret: cacheTestSecret, Leeway: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	clock := time.Now()
	v.now = func() time.Time { return clock }

	tok := cacheTestToken(t, jwt.MapClaims{"sub": "u1", "iat": clock.Unix(), "exp": clock.Add(5 * time.Second).Unix()})
	first, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	// A hit is a map lookup: no JSON decoding, no signature check.
	if n := testing.AllocsPerRun(100, func() { _, _ = v.Verify(ctx, tok) }); n > 1 {
		t.Fatalf("a cached verification allocates %.0f times", n)
	}
	again, err := v.Verify(ctx, tok)
	if err != nil || again.Actor != first.Actor {
		t.Fatalf("cached verification = %+v, %v", again.Actor, err)
	}

	// Past exp plus the leeway the cached identity is not returned: the token is checked again
	// and refused as expired.
	clock = clock.Add(7 * time.Second)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("Verify after expiry = %v, want ErrExpired", err)
	}

	// Failures are not remembered: a forged token fails every time, with the signature error.
	forged := tok[:len(tok)-4] + "AAAA"
	for range 2 {
		if _, err := v.Verify(ctx, forged); !errors.Is(err, ErrSignature) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("forged token = %v", err)
		}
	}
	if len(v.cache.entries) != 1 {
		t.Fatalf("cache holds %d entries, want only the valid token", len(v.cache.entries))
	}
}

func TestTokenCacheTTLAndBound(t *testing.T) {
	clock := time.Now()
	c := newTokenCache(10*time.Second, 3, func() time.Time { return clock })
	id := Identity{Actor: core.Actor{ID: "u"}, ExpiresAt: clock.Add(time.Hour)}
	c.put("a", id, 0)
	if _, ok := c.get("a"); !ok {
		t.Fatal("fresh entry not found")
	}
	clock = clock.Add(11 * time.Second)
	if _, ok := c.get("a"); ok {
		t.Fatal("entry returned after its ttl")
	}
	for i := range 10 {
		c.put(fmt.Sprint("t", i), id, 0)
	}
	if len(c.entries) > 3 {
		t.Fatalf("cache holds %d entries, bound 3", len(c.entries))
	}
	if newTokenCache(0, 10, time.Now) != nil {
		t.Fatal("ttl 0 must disable the cache")
	}
	c.put(string(make([]byte, maxCachedTokenBytes+1)), id, 0)
	if len(c.entries) > 3 {
		t.Fatal("an oversized token was cached")
	}
}

func TestVerifierWithoutCache(t *testing.T) {
	ctx := context.Background()
	v, err := NewVerifier(ctx, core.JWTConfig{Secret: cacheTestSecret}, nil, WithTokenCache(-1, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tok := cacheTestToken(t, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix()})
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if v.cache != nil {
		t.Fatal("cache present although disabled")
	}
	if n := testing.AllocsPerRun(20, func() { _, _ = v.Verify(ctx, tok) }); n < 10 {
		t.Fatalf("uncached verification allocates only %.0f times: is it verifying?", n)
	}
}
