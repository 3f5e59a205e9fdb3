package core

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testKeys holds PEM texts generated once per test binary.
type testKeys struct {
	rsa, rsaPKCS1, rsaSmall, rsaPrivate, rsaCert string
	ec256, ec384, ed25519                        string
}

var generateTestKeys = sync.OnceValues(func() (testKeys, error) {
	var k testKeys
	pkix := func(pub any) (string, error) {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", err
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return k, err
	}
	if k.rsa, err = pkix(&rsaKey.PublicKey); err != nil {
		return k, err
	}
	k.rsaPKCS1 = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)}))
	k.rsaPrivate = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkixName("issuer.example"),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rsaKey.PublicKey, rsaKey)
	if err != nil {
		return k, err
	}
	k.rsaCert = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}))
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		return k, err
	}
	if k.rsaSmall, err = pkix(&small.PublicKey); err != nil {
		return k, err
	}
	for _, c := range []struct {
		curve elliptic.Curve
		dst   *string
	}{{elliptic.P256(), &k.ec256}, {elliptic.P384(), &k.ec384}} {
		ec, err := ecdsa.GenerateKey(c.curve, rand.Reader)
		if err != nil {
			return k, err
		}
		if *c.dst, err = pkix(&ec.PublicKey); err != nil {
			return k, err
		}
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return k, err
	}
	k.ed25519, err = pkix(edPub)
	return k, err
})

func pkixName(cn string) pkix.Name { return pkix.Name{CommonName: cn} }

func keys(t *testing.T) testKeys {
	t.Helper()
	k, err := generateTestKeys()
	if err != nil {
		t.Fatalf("generating test keys: %v", err)
	}
	return k
}

// fromEnv reads environ with a logger that writes into the returned buffer.
func fromEnv(t *testing.T, environ ...string) (Config, error, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := ConfigFromEnvironment(environ, logger)
	if err == nil && c.Logger != logger {
		t.Errorf("Logger was not stored in the Config")
	}
	return c, err, &buf
}

var (
	secret32 = strings.Repeat("s", 32)
	secret48 = strings.Repeat("s", 48)
	secret64 = strings.Repeat("s", 64)
)

func TestConfigZeroValue(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatalf("zero Config: Validate() = %v", err)
	}
	if !c.CaptureORMDiffs() {
		t.Error("zero Config: CaptureORMDiffs() = false, want true")
	}
	if c.JWT.Enabled() {
		t.Error("zero Config: JWT.Enabled() = true")
	}
	d := c.WithDefaults()
	want := Config{
		Schema:           "public",
		ExcludePaths:     DefaultExcludePaths,
		MaxBodySizeBytes: 10000,
		JWT: JWTConfig{
			Claims: ClaimNames{ActorID: "sub", ActorType: "actor_type", Email: "email", TenantID: "tenant_id", TenantSlug: "tenant_slug"},
			Leeway: 30 * time.Second,
		},
		BatchSize:     500,
		FlushInterval: time.Second,
		QueueSize:     10000,
		Logger:        slog.Default(),

		ConnectTimeout: 5 * time.Second,
		AttemptTimeout: 5 * time.Second,
		MaxBackoff:     time.Second,
		TCPKeepAlive:   5 * time.Second,
		TCPUserTimeout: 10 * time.Second,
		Spool:          SpoolConfig{MaxBytes: 1 << 30, Sync: "batch", SyncInterval: time.Second},
		FailurePolicy:  FailOpen,
		Chain:          ChainConfig{CheckpointInterval: time.Minute},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("WithDefaults() =\n%+v\nwant\n%+v", d, want)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("WithDefaults().Validate() = %v", err)
	}
	if !reflect.DeepEqual(d.WithDefaults(), d) {
		t.Error("WithDefaults is not idempotent")
	}
	// The defaults are copied: changing the result must not change DefaultExcludePaths.
	d.ExcludePaths[0] = "/changed"
	if DefaultExcludePaths[0] != "/health" {
		t.Fatal("WithDefaults shares DefaultExcludePaths")
	}
}

func TestConfigWithDefaultsKeepsSetValues(t *testing.T) {
	c := Config{
		Schema: "audit", ExcludePaths: []string{}, DisableDefaultExcludePaths: true, MaxBodySizeBytes: 5, BatchSize: 20000,
		FlushInterval: time.Millisecond, JWT: JWTConfig{Claims: ClaimNames{ActorID: "uid"}, Leeway: time.Second},
	}
	d := c.WithDefaults()
	if d.Schema != "audit" || d.ExcludePaths == nil || len(d.ExcludePaths) != 0 || d.MaxBodySizeBytes != 5 ||
		d.BatchSize != 20000 || d.FlushInterval != time.Millisecond || d.JWT.Leeway != time.Second ||
		d.JWT.Claims.ActorID != "uid" || d.JWT.Claims.Email != "email" {
		t.Errorf("WithDefaults() = %+v", d)
	}
	if d.QueueSize != 20000 {
		t.Errorf("QueueSize = %d, want the batch size 20000 when it exceeds the default", d.QueueSize)
	}
	if d.ExcludesPath("/health") || c.ExcludesPath("/health") {
		t.Error("no ExcludePaths and DisableDefaultExcludePaths must exclude nothing")
	}
	// Negative values are kept for Validate to report.
	if got := (Config{BatchSize: -1}).WithDefaults().BatchSize; got != -1 {
		t.Errorf("BatchSize -1 became %d", got)
	}
}

func TestConfigFromEnvironmentEmpty(t *testing.T) {
	c, err, logs := fromEnv(t, "PATH=/bin", "HOME=/root", "=C:=C:\\", "NOEQUALS")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Logger: c.Logger}.WithDefaults()
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
	if logs.Len() != 0 {
		t.Errorf("unexpected log output: %s", logs)
	}
}

func TestConfigFromEnvNilLogger(t *testing.T) {
	c, err := ConfigFromEnvironment([]string{"AUDIT_BATCH_SIZE=7"}, nil)
	if err != nil || c.BatchSize != 7 || c.Logger != slog.Default() {
		t.Fatalf("got %+v, %v", c, err)
	}
	t.Setenv("AUDIT_BATCH_SIZE", "9")
	c, err = ConfigFromEnv()
	if err != nil || c.BatchSize != 9 {
		t.Fatalf("ConfigFromEnv() = %+v, %v", c, err)
	}
}

func TestConfigEnvGood(t *testing.T) {
	k := keys(t)
	tests := []struct {
		env   string
		check func(Config) bool
	}{
		{"AUDIT_DATABASE_URL=postgres://u:p@db:5432/app?sslmode=disable", func(c Config) bool {
			return c.DatabaseURL == "postgres://u:p@db:5432/app?sslmode=disable"
		}},
		{"AUDIT_DATABASE_URL=host=db user=audit dbname=app", func(c Config) bool { return c.DatabaseURL == "host=db user=audit dbname=app" }},
		{"AUDIT_DATABASE_URL=postgresql:///app", func(c Config) bool { return c.DatabaseURL == "postgresql:///app" }},
		{"AUDIT_CONTROL_DB_URL=postgres://db/app", func(c Config) bool { return c.DatabaseURL == "postgres://db/app" }},
		{"AUDIT_DB_SCHEMA=audit_2", func(c Config) bool { return c.Schema == "audit_2" }},
		{"AUDIT_DB_SCHEMA=  _x  ", func(c Config) bool { return c.Schema == "_x" }},
		{"AUDIT_DB_SCHEMA=" + strings.Repeat("a", 63), func(c Config) bool { return len(c.Schema) == 63 }},
		{"AUDIT_DB_SCHEMA=", func(c Config) bool { return c.Schema == "public" }},
		{"AUDIT_REDACT_FIELDS= iban, ,pin ,", func(c Config) bool { return slices.Equal(c.RedactFields, []string{"iban", "pin"}) }},
		{"AUDIT_REDACT_ALLOW=token_type,secretary", func(c Config) bool {
			return slices.Equal(c.RedactAllow, []string{"token_type", "secretary"})
		}},
		{"AUDIT_EXCLUDE_PATHS=/internal/*, /ping", func(c Config) bool {
			return slices.Equal(c.ExcludePaths, append(slices.Clone(DefaultExcludePaths), "/internal/*", "/ping"))
		}},
		{"AUDIT_ACTOR_TYPE_ALIASES=ops_admin=platform_admin, Bot = SERVICE", func(c Config) bool {
			return reflect.DeepEqual(c.ActorTypeAliases, map[string]ActorType{"ops_admin": ActorPlatformAdmin, "Bot": ActorService})
		}},
		{"AUDIT_CAPTURE_REQUEST_BODY=yes", func(c Config) bool { return c.CaptureRequestBody }},
		{"AUDIT_CAPTURE_REQUEST_BODY=off", func(c Config) bool { return !c.CaptureRequestBody }},
		{"AUDIT_CAPTURE_RESPONSE_BODY=TRUE", func(c Config) bool { return c.CaptureResponseBody }},
		{"AUDIT_CAPTURE_RESPONSE_BODY=0", func(c Config) bool { return !c.CaptureResponseBody }},
		{"AUDIT_CAPTURE_ORM_DIFFS=false", func(c Config) bool { return c.DisableORMDiffs && !c.CaptureORMDiffs() }},
		{"AUDIT_CAPTURE_ORM_DIFFS=On", func(c Config) bool { return c.CaptureORMDiffs() }},
		{"AUDIT_LOG_ANONYMOUS=1", func(c Config) bool { return c.LogAnonymous }},
		{"AUDIT_LOG_ANONYMOUS=No", func(c Config) bool { return !c.LogAnonymous }},
		{"AUDIT_MAX_BODY_SIZE_BYTES=2048", func(c Config) bool { return c.MaxBodySizeBytes == 2048 }},
		{"AUDIT_MAX_BODY_SIZE_BYTES=10485760", func(c Config) bool { return c.MaxBodySizeBytes == 10<<20 }},
		{"AUDIT_JWT_SECRET=" + secret32, func(c Config) bool {
			return c.JWT.Secret == secret32 && slices.Equal(c.JWT.Algorithms, []string{"HS256"})
		}},
		{"AUDIT_JWT_PUBLIC_KEY=" + k.rsa, func(c Config) bool {
			return c.JWT.PublicKeyPEM == strings.TrimSpace(k.rsa) && slices.Equal(c.JWT.Algorithms, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
		}},
		{"AUDIT_JWT_PUBLIC_KEY=" + strings.ReplaceAll(k.ec256, "\n", `\n`), func(c Config) bool {
			return c.JWT.PublicKeyPEM == k.ec256 && slices.Equal(c.JWT.Algorithms, []string{"ES256"})
		}},
		{"AUDIT_JWT_PUBLIC_KEY=" + k.ec384, func(c Config) bool { return slices.Equal(c.JWT.Algorithms, []string{"ES384"}) }},
		{"AUDIT_JWT_PUBLIC_KEY=" + k.ed25519, func(c Config) bool { return slices.Equal(c.JWT.Algorithms, []string{"EdDSA"}) }},
		{"AUDIT_JWT_PUBLIC_KEY=" + k.rsaPKCS1, func(c Config) bool { return c.JWT.PublicKeyPEM == strings.TrimSpace(k.rsaPKCS1) }},
		{"AUDIT_JWT_PUBLIC_KEY=" + k.rsaCert, func(c Config) bool { return c.JWT.PublicKeyPEM == strings.TrimSpace(k.rsaCert) }},
		{"AUDIT_JWT_JWKS_URL=https://issuer.example/.well-known/jwks.json", func(c Config) bool {
			return c.JWT.JWKSURL == "https://issuer.example/.well-known/jwks.json" && !slices.Contains(c.JWT.Algorithms, "HS256") &&
				slices.Contains(c.JWT.Algorithms, "EdDSA") && len(c.JWT.Algorithms) == 10
		}},
		{"AUDIT_JWT_JWKS_URL=http://localhost:8080/jwks", func(c Config) bool { return c.JWT.JWKSURL == "http://localhost:8080/jwks" }},
		{"AUDIT_JWT_ISSUER=https://issuer.example/", func(c Config) bool { return c.JWT.Issuer == "https://issuer.example/" }},
		{"AUDIT_JWT_AUDIENCE=api, admin ,", func(c Config) bool { return slices.Equal(c.JWT.Audience, []string{"api", "admin"}) }},
		{"AUDIT_JWT_CLAIM_MAP=actor_id=uid, email = mail,TENANT_ID=org", func(c Config) bool {
			return c.JWT.Claims == ClaimNames{ActorID: "uid", ActorType: "actor_type", Email: "mail", TenantID: "org", TenantSlug: "tenant_slug"}
		}},
		{"AUDIT_JWT_CLAIM_MAP=actor_type=role,tenant_slug=org_slug", func(c Config) bool {
			return c.JWT.Claims.ActorType == "role" && c.JWT.Claims.TenantSlug == "org_slug" && c.JWT.Claims.ActorID == "sub"
		}},
		{"AUDIT_JWT_LEEWAY=5s", func(c Config) bool { return c.JWT.Leeway == 5*time.Second }},
		{"AUDIT_JWT_LEEWAY=5m", func(c Config) bool { return c.JWT.Leeway == 5*time.Minute }},
		{"AUDIT_JWT_UNSAFE_SKIP_VERIFICATION=true", func(c Config) bool {
			return c.JWT.UnsafeSkipVerification && c.JWT.Enabled() && len(c.JWT.Algorithms) == 13
		}},
		{"AUDIT_JWT_UNSAFE_SKIP_VERIFICATION=false", func(c Config) bool { return !c.JWT.UnsafeSkipVerification }},
		{"AUDIT_TRUSTED_PROXIES=10.0.0.0/8, 192.168.1.1,2001:db8::/32,::1", func(c Config) bool {
			return slices.Equal(c.TrustedProxies, []string{"10.0.0.0/8", "192.168.1.1", "2001:db8::/32", "::1"})
		}},
		{"AUDIT_TENANT_HEADER=X-Tenant-ID", func(c Config) bool { return c.TenantHeader == "X-Tenant-ID" }},
		{"AUDIT_SKIP_METHODS=options, head,OPTIONS", func(c Config) bool { return slices.Equal(c.SkipMethods, []string{"OPTIONS", "HEAD"}) }},
		{"AUDIT_BATCH_SIZE=1", func(c Config) bool { return c.BatchSize == 1 && c.QueueSize == 10000 }},
		{"AUDIT_BATCH_SIZE=100000", func(c Config) bool { return c.BatchSize == 100000 && c.QueueSize == 100000 }},
		{"AUDIT_FLUSH_INTERVAL=500ms", func(c Config) bool { return c.FlushInterval == 500*time.Millisecond }},
		{"AUDIT_FLUSH_INTERVAL=1ms", func(c Config) bool { return c.FlushInterval == time.Millisecond }},
		{"AUDIT_QUEUE_SIZE=500", func(c Config) bool { return c.QueueSize == 500 }},
		{"AUDIT_QUEUE_SIZE= 20000 ", func(c Config) bool { return c.QueueSize == 20000 }},
		{"AUDIT_CONNECT_TIMEOUT=200ms", func(c Config) bool { return c.ConnectTimeout == 200*time.Millisecond }},
		{"AUDIT_CONNECT_TIMEOUT=5m", func(c Config) bool { return c.ConnectTimeout == 5*time.Minute }},
		{"AUDIT_WRITE_TIMEOUT=100ms", func(c Config) bool { return c.AttemptTimeout == 100*time.Millisecond }},
		{"AUDIT_WRITE_TIMEOUT=10m", func(c Config) bool { return c.AttemptTimeout == 10*time.Minute }},
		{"AUDIT_MAX_BACKOFF=10ms", func(c Config) bool { return c.MaxBackoff == 10*time.Millisecond }},
		{"AUDIT_MAX_BACKOFF=30s", func(c Config) bool { return c.MaxBackoff == 30*time.Second }},
		{"AUDIT_TCP_KEEPALIVE=15s", func(c Config) bool { return c.TCPKeepAlive == 15*time.Second }},
		{"AUDIT_TCP_KEEPALIVE=OFF", func(c Config) bool { return c.TCPKeepAlive < 0 }},
		{"AUDIT_TCP_USER_TIMEOUT=30s", func(c Config) bool { return c.TCPUserTimeout == 30*time.Second }},
		{"AUDIT_TCP_USER_TIMEOUT=off", func(c Config) bool { return c.TCPUserTimeout < 0 && c.TCPKeepAlive == 5*time.Second }},
		{"AUDIT_SPOOL_DIR=/var/spool/audit", func(c Config) bool { return c.Spool.Dir == "/var/spool/audit" && c.Spool.MaxBytes == 1<<30 }},
		{"AUDIT_SPOOL_MAX_BYTES=512MiB", func(c Config) bool { return c.Spool.MaxBytes == 512<<20 }},
		{"AUDIT_SPOOL_MAX_BYTES=1GiB", func(c Config) bool { return c.Spool.MaxBytes == 1<<30 }},
		{"AUDIT_SPOOL_MAX_BYTES=2 gib", func(c Config) bool { return c.Spool.MaxBytes == 2<<30 }},
		{"AUDIT_SPOOL_MAX_BYTES=500MB", func(c Config) bool { return c.Spool.MaxBytes == 500e6 }},
		{"AUDIT_SPOOL_MAX_BYTES=1048576", func(c Config) bool { return c.Spool.MaxBytes == 1<<20 }},
		{"AUDIT_SPOOL_SYNC=Interval", func(c Config) bool { return c.Spool.Sync == "interval" }},
		{"AUDIT_SPOOL_SYNC=never", func(c Config) bool { return c.Spool.Sync == "never" }},
		{"AUDIT_SPOOL_SYNC_INTERVAL=250ms", func(c Config) bool { return c.Spool.SyncInterval == 250*time.Millisecond }},
		{"AUDIT_FAILURE_POLICY=closed", func(c Config) bool { return c.FailurePolicy == FailClosed }},
		{"AUDIT_FAILURE_POLICY=Open", func(c Config) bool { return c.FailurePolicy == FailOpen }},
		{"AUDIT_SKIP_SCHEMA_CHECK=true", func(c Config) bool { return c.SkipSchemaCheck }},
	}
	for _, tt := range tests {
		name, _, _ := strings.Cut(tt.env, "=")
		t.Run(name, func(t *testing.T) {
			c, err, logs := fromEnv(t, tt.env)
			if err != nil {
				t.Fatalf("%.80q: unexpected error: %v", tt.env, err)
			}
			if !tt.check(c) {
				t.Errorf("%.80q: unexpected Config %+v", tt.env, c)
			}
			if strings.Contains(logs.String(), "unknown environment variable") {
				t.Errorf("%s reported as unknown: %s", name, logs)
			}
		})
	}
}

func TestConfigEnvMalformed(t *testing.T) {
	k := keys(t)
	tests := []struct {
		env  []string
		want string // the whole message of the only error
	}{
		{[]string{"AUDIT_DATABASE_URL=mysql://u:hunter2@db/app"}, `AUDIT_DATABASE_URL: scheme "mysql" is not postgres:// or postgresql://`},
		{[]string{"AUDIT_DATABASE_URL=not a dsn"}, `AUDIT_DATABASE_URL: is not a valid PostgreSQL URL or key=value connection string: invalid keyword/value`},
		{[]string{"AUDIT_DATABASE_URL=postgres://u:hunter2@db:99999/app"}, `AUDIT_DATABASE_URL: is not a valid PostgreSQL URL or key=value connection string: invalid port`},
		{[]string{"AUDIT_CONTROL_DB_URL=host=db port=x"}, `AUDIT_CONTROL_DB_URL: is not a valid PostgreSQL URL or key=value connection string: invalid port`},
		{[]string{"AUDIT_DB_SCHEMA=Audit"}, `AUDIT_DB_SCHEMA: "Audit" is not lower case; PostgreSQL folds unquoted names to lower case, so a mixed-case schema would differ depending on quoting (use "audit")`},
		{[]string{"AUDIT_DB_SCHEMA=audit-logs"}, `AUDIT_DB_SCHEMA: "audit-logs" is not a plain identifier (letters, digits and underscore, not starting with a digit)`},
		{[]string{"AUDIT_DB_SCHEMA=1audit"}, `AUDIT_DB_SCHEMA: "1audit" is not a plain identifier (letters, digits and underscore, not starting with a digit)`},
		{[]string{"AUDIT_DB_SCHEMA=" + strings.Repeat("a", 64)}, `AUDIT_DB_SCHEMA: "` + strings.Repeat("a", 64) + `" is longer than 63 bytes, PostgreSQL's identifier limit`},
		{[]string{"AUDIT_DB_SCHEMA=pg_audit"}, `AUDIT_DB_SCHEMA: "pg_audit": names beginning with pg_ are reserved by PostgreSQL`},
		{[]string{"AUDIT_REDACT_FIELDS=iban,_-."}, `AUDIT_REDACT_FIELDS: pattern "_-." has no letter or digit (keys are compared by their words of letters and digits), so it would match nothing`},
		{[]string{"AUDIT_REDACT_FIELDS=iban,$$"}, `AUDIT_REDACT_FIELDS: pattern "$$" has no letter or digit (keys are compared by their words of letters and digits), so it would match nothing`},
		{[]string{"AUDIT_REDACT_ALLOW=token_type,--"}, `AUDIT_REDACT_ALLOW: key "--" has no letter or digit (keys are compared by their words of letters and digits), so it would exempt nothing`},
		{[]string{"AUDIT_EXCLUDE_PATHS=health"}, `AUDIT_EXCLUDE_PATHS: "health" does not start with "/"`},
		{[]string{"AUDIT_EXCLUDE_PATHS=/a/*/b"}, `AUDIT_EXCLUDE_PATHS: "/a/*/b" has "*" before the end; "*" is allowed only as the last character, meaning a prefix`},
		{[]string{"AUDIT_EXCLUDE_PATHS=/a?b=1"}, `AUDIT_EXCLUDE_PATHS: "/a?b=1" contains a space, '?' or '#'; paths are matched without the query string`},
		{[]string{"AUDIT_ACTOR_TYPE_ALIASES=bot=robot"}, `AUDIT_ACTOR_TYPE_ALIASES: alias "bot" maps to "robot", which is not an actor type (want platform_admin, tenant_user, service, system or anonymous)`},
		{[]string{"AUDIT_ACTOR_TYPE_ALIASES=bot=service,BOT=system"}, `AUDIT_ACTOR_TYPE_ALIASES: aliases "BOT" and "bot" differ only in case`},
		{[]string{"AUDIT_ACTOR_TYPE_ALIASES=bot=service,bot=system"}, `AUDIT_ACTOR_TYPE_ALIASES: alias "bot" is given twice`},
		{[]string{"AUDIT_ACTOR_TYPE_ALIASES==service"}, `AUDIT_ACTOR_TYPE_ALIASES: item "=service" has an empty key`},
		{[]string{"AUDIT_ACTOR_TYPE_ALIASES=bot="}, `AUDIT_ACTOR_TYPE_ALIASES: item "bot=" has an empty value`},
		{[]string{"AUDIT_ACTOR_TYPE_ALIASES=bot"}, `AUDIT_ACTOR_TYPE_ALIASES: item "bot" is not key=value`},
		{[]string{"AUDIT_ACTOR_TYPE_ALIASES=service=platform_admin"}, `AUDIT_ACTOR_TYPE_ALIASES: alias "service" is a defined actor type and cannot be redefined`},
		{[]string{"AUDIT_CAPTURE_REQUEST_BODY=maybe"}, `AUDIT_CAPTURE_REQUEST_BODY: "maybe" is not a boolean (want true/false, 1/0, yes/no or on/off)`},
		{[]string{"AUDIT_CAPTURE_RESPONSE_BODY=2"}, `AUDIT_CAPTURE_RESPONSE_BODY: "2" is not a boolean (want true/false, 1/0, yes/no or on/off)`},
		{[]string{"AUDIT_CAPTURE_ORM_DIFFS=enabled"}, `AUDIT_CAPTURE_ORM_DIFFS: "enabled" is not a boolean (want true/false, 1/0, yes/no or on/off)`},
		{[]string{"AUDIT_LOG_ANONYMOUS=y"}, `AUDIT_LOG_ANONYMOUS: "y" is not a boolean (want true/false, 1/0, yes/no or on/off)`},
		{[]string{"AUDIT_MAX_BODY_SIZE_BYTES=10kb"}, `AUDIT_MAX_BODY_SIZE_BYTES: "10kb" is not a whole number`},
		{[]string{"AUDIT_MAX_BODY_SIZE_BYTES=0"}, `AUDIT_MAX_BODY_SIZE_BYTES: 0 is out of range 1..10485760`},
		{[]string{"AUDIT_MAX_BODY_SIZE_BYTES=10485761"}, `AUDIT_MAX_BODY_SIZE_BYTES: 10485761 is out of range 1..10485760`},
		{[]string{"AUDIT_MAX_BODY_SIZE_BYTES=-5"}, `AUDIT_MAX_BODY_SIZE_BYTES: -5 is out of range 1..10485760`},
		{[]string{"AUDIT_JWT_SECRET=short"}, `AUDIT_JWT_SECRET: the secret is 5 bytes; at least 32 are required, because a shorter HMAC secret can be recovered by brute force from any token it signed (RFC 7518 section 3.2)`},
		{[]string{"AUDIT_JWT_PUBLIC_KEY=" + k.rsaPrivate}, `AUDIT_JWT_PUBLIC_KEY: the PEM block is a RSA PRIVATE KEY; give the public key only, a verifier must not hold the signing key`},
		{[]string{"AUDIT_JWT_PUBLIC_KEY=" + k.rsaSmall}, `AUDIT_JWT_PUBLIC_KEY: the RSA key has 1024 bits; at least 2048 are required`},
		{[]string{"AUDIT_JWT_PUBLIC_KEY=" + k.rsa + k.ec256}, `AUDIT_JWT_PUBLIC_KEY: more than one PEM block; give exactly one key (a JWKS URL serves several)`},
		{[]string{"AUDIT_JWT_PUBLIC_KEY=-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----"}, `AUDIT_JWT_PUBLIC_KEY: no PEM block found`},
		{[]string{"AUDIT_JWT_JWKS_URL=/jwks.json"}, `AUDIT_JWT_JWKS_URL: "/jwks.json" is not an absolute http or https URL`},
		{[]string{"AUDIT_JWT_JWKS_URL=ftp://issuer.example/jwks"}, `AUDIT_JWT_JWKS_URL: "ftp://issuer.example/jwks" is not an absolute http or https URL`},
		{[]string{"AUDIT_JWT_CLAIM_MAP=user=uid"}, `AUDIT_JWT_CLAIM_MAP: unknown key "user" (want actor_id, actor_type, email, tenant_id or tenant_slug)`},
		{[]string{"AUDIT_JWT_CLAIM_MAP=email=mail,email=e"}, `AUDIT_JWT_CLAIM_MAP: key "email" is given twice`},
		{[]string{"AUDIT_JWT_CLAIM_MAP=email"}, `AUDIT_JWT_CLAIM_MAP: item "email" is not key=value`},
		{[]string{"AUDIT_JWT_CLAIM_MAP=email=e mail"}, `AUDIT_JWT_CLAIM_MAP: email: claim name "e mail" contains spaces`},
		{[]string{"AUDIT_JWT_SECRET=" + secret32, "AUDIT_JWT_ALGORITHMS=HS256,none"}, `AUDIT_JWT_ALGORITHMS: "none" means an unsigned token and is never accepted (AUDIT_JWT_UNSAFE_SKIP_VERIFICATION exists for tokens verified by a gateway)`},
		{[]string{"AUDIT_JWT_SECRET=" + secret32, "AUDIT_JWT_ALGORITHMS=HS999"}, `AUDIT_JWT_ALGORITHMS: unknown algorithm "HS999" (want one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)`},
		{[]string{"AUDIT_JWT_SECRET=" + secret32, "AUDIT_JWT_ALGORITHMS=RS256"}, `AUDIT_JWT_ALGORITHMS: RS256 cannot be used with an HMAC secret (allowed: HS256); accepting it would open the door to algorithm-confusion attacks`},
		{[]string{"AUDIT_JWT_PUBLIC_KEY=" + k.rsa, "AUDIT_JWT_ALGORITHMS=HS256"}, `AUDIT_JWT_ALGORITHMS: HS256 cannot be used with an RSA-2048 public key (allowed: RS256, RS384, RS512, PS256, PS384, PS512); accepting it would open the door to algorithm-confusion attacks`},
		{[]string{"AUDIT_JWT_PUBLIC_KEY=" + k.ec256, "AUDIT_JWT_ALGORITHMS=ES384"}, `AUDIT_JWT_ALGORITHMS: ES384 cannot be used with an ECDSA P-256 public key (allowed: ES256); accepting it would open the door to algorithm-confusion attacks`},
		{[]string{"AUDIT_JWT_JWKS_URL=https://i.example/jwks", "AUDIT_JWT_ALGORITHMS=HS256"}, `AUDIT_JWT_ALGORITHMS: HS256 cannot be used with a JWKS URL (allowed: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA); accepting it would open the door to algorithm-confusion attacks`},
		{[]string{"AUDIT_JWT_LEEWAY=30"}, `AUDIT_JWT_LEEWAY: "30" is not a duration (use Go syntax such as 500ms, 30s or 2m)`},
		{[]string{"AUDIT_JWT_LEEWAY=1h"}, `AUDIT_JWT_LEEWAY: 1h0m0s is longer than 5m0s; a large leeway keeps expired tokens valid`},
		{[]string{"AUDIT_JWT_LEEWAY=-1s"}, `AUDIT_JWT_LEEWAY: -1s is negative`},
		{[]string{"AUDIT_JWT_LEEWAY=0s"}, `AUDIT_JWT_LEEWAY: 0s would mean the default (30s); give a positive duration up to 5m0s`},
		{[]string{"AUDIT_JWT_UNSAFE_SKIP_VERIFICATION=please"}, `AUDIT_JWT_UNSAFE_SKIP_VERIFICATION: "please" is not a boolean (want true/false, 1/0, yes/no or on/off)`},
		{[]string{"AUDIT_JWT_UNSAFE_SKIP_VERIFICATION=1", "AUDIT_JWT_SECRET=" + secret32}, `AUDIT_JWT_UNSAFE_SKIP_VERIFICATION: cannot be combined with AUDIT_JWT_SECRET: either verify tokens or skip verification`},
		{[]string{"AUDIT_JWT_SECRET=" + secret32, "AUDIT_JWT_JWKS_URL=https://i.example/jwks"}, `AUDIT_JWT_SECRET: only one key source may be set, and AUDIT_JWT_JWKS_URL is set too`},
		{[]string{"AUDIT_TRUSTED_PROXIES=10.0.0.0/33"}, `AUDIT_TRUSTED_PROXIES: "10.0.0.0/33" is not a valid CIDR prefix`},
		{[]string{"AUDIT_TRUSTED_PROXIES=proxy.internal"}, `AUDIT_TRUSTED_PROXIES: "proxy.internal" is not a valid IP address or CIDR prefix`},
		{[]string{"AUDIT_TRUSTED_PROXIES=fe80::1%eth0"}, `AUDIT_TRUSTED_PROXIES: "fe80::1%eth0" has an IPv6 zone, which proxy matching does not support`},
		{[]string{"AUDIT_TENANT_HEADER=X Tenant"}, `AUDIT_TENANT_HEADER: "X Tenant" is not a valid header name`},
		{[]string{"AUDIT_TENANT_HEADER=X-Tenant:"}, `AUDIT_TENANT_HEADER: "X-Tenant:" is not a valid header name`},
		{[]string{"AUDIT_SKIP_METHODS=GET,PO(ST"}, `AUDIT_SKIP_METHODS: "PO(ST" is not a valid HTTP method`},
		{[]string{"AUDIT_JWT_AUDIENCE= , "}, `AUDIT_JWT_AUDIENCE: "," lists no item; give at least one, or unset the variable`},
		{[]string{"AUDIT_JWT_ISSUER=https://issuer.example/\x1b[0m"}, `AUDIT_JWT_ISSUER: "https://issuer.example/\x1b[0m" contains a control character`},
		{[]string{"AUDIT_JWT_ISSUER=https://a.example/ https://b.example/"}, `AUDIT_JWT_ISSUER: "https://a.example/ https://b.example/" is not a single URL; only one issuer can be configured, and it must equal the token's iss claim`},
		{[]string{"AUDIT_JWT_ISSUER=https://a.example/,https://b.example/"}, `AUDIT_JWT_ISSUER: "https://a.example/,https://b.example/" is not a single URL; only one issuer can be configured, and it must equal the token's iss claim`},
		{[]string{"AUDIT_JWT_ISSUER=https://a.example/ trailing"}, `AUDIT_JWT_ISSUER: "https://a.example/ trailing" is not a single URL; only one issuer can be configured, and it must equal the token's iss claim`},
		{[]string{"AUDIT_REDACT_FIELDS=,"}, `AUDIT_REDACT_FIELDS: "," lists no item; give at least one, or unset the variable`},
		{[]string{"AUDIT_REDACT_ALLOW=, ,"}, `AUDIT_REDACT_ALLOW: ", ," lists no item; give at least one, or unset the variable`},
		{[]string{"AUDIT_EXCLUDE_PATHS=,"}, `AUDIT_EXCLUDE_PATHS: "," lists no item; give at least one, or unset the variable`},
		{[]string{"AUDIT_ACTOR_TYPE_ALIASES=,"}, `AUDIT_ACTOR_TYPE_ALIASES: "," lists no item; give at least one, or unset the variable`},
		{[]string{"AUDIT_JWT_CLAIM_MAP=,,"}, `AUDIT_JWT_CLAIM_MAP: ",," lists no item; give at least one, or unset the variable`},
		{[]string{"AUDIT_JWT_ALGORITHMS=,"}, `AUDIT_JWT_ALGORITHMS: "," lists no item; give at least one, or unset the variable`},
		{[]string{"AUDIT_TRUSTED_PROXIES= , "}, `AUDIT_TRUSTED_PROXIES: "," lists no item; give at least one, or unset the variable`},
		{[]string{"AUDIT_SKIP_METHODS=,"}, `AUDIT_SKIP_METHODS: "," lists no item; give at least one, or unset the variable`},
		{[]string{"AUDIT_BATCH_SIZE=abc"}, `AUDIT_BATCH_SIZE: "abc" is not a whole number`},
		{[]string{"AUDIT_BATCH_SIZE=1.5"}, `AUDIT_BATCH_SIZE: "1.5" is not a whole number`},
		{[]string{"AUDIT_BATCH_SIZE=0"}, `AUDIT_BATCH_SIZE: 0 is out of range 1..100000`},
		{[]string{"AUDIT_BATCH_SIZE=100001"}, `AUDIT_BATCH_SIZE: 100001 is out of range 1..100000`},
		{[]string{"AUDIT_BATCH_SIZE=99999999999999999999"}, `AUDIT_BATCH_SIZE: "99999999999999999999" is out of range 1..100000`},
		{[]string{"AUDIT_FLUSH_INTERVAL=1"}, `AUDIT_FLUSH_INTERVAL: "1" is not a duration (use Go syntax such as 500ms, 30s or 2m)`},
		{[]string{"AUDIT_FLUSH_INTERVAL=500us"}, `AUDIT_FLUSH_INTERVAL: 500µs is shorter than 1ms`},
		{[]string{"AUDIT_FLUSH_INTERVAL=0"}, `AUDIT_FLUSH_INTERVAL: 0s is shorter than 1ms`},
		{[]string{"AUDIT_FLUSH_INTERVAL=-1s"}, `AUDIT_FLUSH_INTERVAL: -1s is shorter than 1ms`},
		{[]string{"AUDIT_QUEUE_SIZE=lots"}, `AUDIT_QUEUE_SIZE: "lots" is not a whole number`},
		{[]string{"AUDIT_QUEUE_SIZE=0"}, `AUDIT_QUEUE_SIZE: 0 is out of range 1..10000000`},
		{[]string{"AUDIT_QUEUE_SIZE=100000000"}, `AUDIT_QUEUE_SIZE: 100000000 is out of range 1..10000000`},
		{[]string{"AUDIT_QUEUE_SIZE=100"}, `AUDIT_QUEUE_SIZE: 100 is smaller than AUDIT_BATCH_SIZE (500); the queue must hold at least one batch`},
		{[]string{"AUDIT_QUEUE_SIZE=1000", "AUDIT_BATCH_SIZE=2000"}, `AUDIT_QUEUE_SIZE: 1000 is smaller than AUDIT_BATCH_SIZE (2000); the queue must hold at least one batch`},
		{[]string{"AUDIT_CONNECT_TIMEOUT=5"}, `AUDIT_CONNECT_TIMEOUT: "5" is not a duration (use Go syntax such as 500ms, 30s or 2m)`},
		{[]string{"AUDIT_CONNECT_TIMEOUT=0"}, `AUDIT_CONNECT_TIMEOUT: 0s is out of range 100ms..5m0s`},
		{[]string{"AUDIT_CONNECT_TIMEOUT=10ms"}, `AUDIT_CONNECT_TIMEOUT: 10ms is out of range 100ms..5m0s`},
		{[]string{"AUDIT_CONNECT_TIMEOUT=1h"}, `AUDIT_CONNECT_TIMEOUT: 1h0m0s is out of range 100ms..5m0s`},
		{[]string{"AUDIT_WRITE_TIMEOUT=-1s"}, `AUDIT_WRITE_TIMEOUT: -1s is out of range 100ms..10m0s`},
		{[]string{"AUDIT_WRITE_TIMEOUT=11m"}, `AUDIT_WRITE_TIMEOUT: 11m0s is out of range 100ms..10m0s`},
		{[]string{"AUDIT_MAX_BACKOFF=1ms"}, `AUDIT_MAX_BACKOFF: 1ms is out of range 10ms..5m0s`},
		{[]string{"AUDIT_TCP_KEEPALIVE=500ms"}, `AUDIT_TCP_KEEPALIVE: 500ms is out of range 1s..2h0m0s (or "off")`},
		{[]string{"AUDIT_TCP_KEEPALIVE=never"}, `AUDIT_TCP_KEEPALIVE: "never" is not a duration (use Go syntax such as 500ms, 30s or 2m)`},
		{[]string{"AUDIT_TCP_USER_TIMEOUT=0"}, `AUDIT_TCP_USER_TIMEOUT: 0s is out of range 1s..1h0m0s (or "off")`},
		{[]string{"AUDIT_TCP_USER_TIMEOUT=2h"}, `AUDIT_TCP_USER_TIMEOUT: 2h0m0s is out of range 1s..1h0m0s (or "off")`},
		{[]string{"AUDIT_SPOOL_MAX_BYTES=1.5GiB"}, `AUDIT_SPOOL_MAX_BYTES: "1.5GiB" is not a size (use bytes, or a whole number with KiB, MiB, GiB, TiB, kB, MB, GB or TB)`},
		{[]string{"AUDIT_SPOOL_MAX_BYTES=1PiB"}, `AUDIT_SPOOL_MAX_BYTES: "1PiB" is not a size (use bytes, or a whole number with KiB, MiB, GiB, TiB, kB, MB, GB or TB)`},
		{[]string{"AUDIT_SPOOL_MAX_BYTES=-1"}, `AUDIT_SPOOL_MAX_BYTES: "-1" is not a size (use bytes, or a whole number with KiB, MiB, GiB, TiB, kB, MB, GB or TB)`},
		{[]string{"AUDIT_SPOOL_MAX_BYTES=99999999999TiB"}, `AUDIT_SPOOL_MAX_BYTES: "99999999999TiB" is too large`},
		{[]string{"AUDIT_SPOOL_MAX_BYTES=0"}, `AUDIT_SPOOL_MAX_BYTES: 0 bytes is less than the minimum of 1 MiB (1048576)`},
		{[]string{"AUDIT_SPOOL_MAX_BYTES=1000"}, `AUDIT_SPOOL_MAX_BYTES: 1000 bytes is less than the minimum of 1 MiB (1048576)`},
		{[]string{"AUDIT_SPOOL_SYNC=always"}, `AUDIT_SPOOL_SYNC: "always" is not a sync mode (want batch, interval or never)`},
		{[]string{"AUDIT_SPOOL_SYNC_INTERVAL=2h"}, `AUDIT_SPOOL_SYNC_INTERVAL: 2h0m0s is out of range 1ms..1h0m0s`},
		{[]string{"AUDIT_FAILURE_POLICY=strict"}, `AUDIT_FAILURE_POLICY: "strict" is not a failure policy (want open or closed)`},
		{[]string{"AUDIT_SKIP_SCHEMA_CHECK=sure"}, `AUDIT_SKIP_SCHEMA_CHECK: "sure" is not a boolean (want true/false, 1/0, yes/no or on/off)`},
	}
	for _, tt := range tests {
		name, _, _ := strings.Cut(tt.env[0], "=")
		t.Run(name, func(t *testing.T) {
			c, err, _ := fromEnv(t, tt.env...)
			if err == nil {
				t.Fatalf("%.80q: no error, Config %+v", tt.env, c)
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error does not wrap ErrConfig: %v", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("%.80q:\n got: %s\nwant: %s", tt.env, got, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error reveals the database password: %v", err)
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Errorf("Config returned with an error is not the zero value: %+v", c)
			}
		})
	}
}

func TestConfigEnvDatabaseURLAlias(t *testing.T) {
	c, err, _ := fromEnv(t, "AUDIT_DATABASE_URL=postgres://db/app", "AUDIT_CONTROL_DB_URL=postgres://db/app")
	if err != nil || c.DatabaseURL != "postgres://db/app" {
		t.Fatalf("same value under both names: %q, %v", c.DatabaseURL, err)
	}
	_, err, _ = fromEnv(t, "AUDIT_DATABASE_URL=postgres://db/app", "AUDIT_CONTROL_DB_URL=postgres://other/app")
	want := "AUDIT_DATABASE_URL and AUDIT_CONTROL_DB_URL: both are set and differ; set only AUDIT_DATABASE_URL (AUDIT_CONTROL_DB_URL is an older alias)"
	if err == nil || err.Error() != want || !errors.Is(err, ErrConfig) {
		t.Fatalf("different values: got %v, want %s", err, want)
	}
	// An empty primary counts as unset, so the alias applies.
	c, err, _ = fromEnv(t, "AUDIT_DATABASE_URL=", "AUDIT_CONTROL_DB_URL=host=db")
	if err != nil || c.DatabaseURL != "host=db" {
		t.Fatalf("empty primary: %q, %v", c.DatabaseURL, err)
	}
}

func TestConfigExcludePaths(t *testing.T) {
	c, err, _ := fromEnv(t, "AUDIT_EXCLUDE_PATHS=/metrics, /internal/*,/docs*,/internal/*,/healthz")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/health", "/metrics", "/docs", "/openapi.json", "/redoc", "/internal/*", "/docs*", "/healthz"}
	if !slices.Equal(c.ExcludePaths, want) {
		t.Fatalf("ExcludePaths = %q, want %q (defaults first, deduplicated)", c.ExcludePaths, want)
	}
	tests := []struct {
		path string
		want bool
	}{
		{"/health", true},
		{"/health/live", false}, // exact entry
		{"/health/", false},
		{"/healthz", true},
		{"/internal/", true}, // prefix entry
		{"/internal/jobs/1", true},
		{"/internal", false},
		{"/docs", true},
		{"/docsearch", true},
		{"/users", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := c.ExcludesPath(tt.path); got != tt.want {
			t.Errorf("ExcludesPath(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
	if !(Config{}).ExcludesPath("/openapi.json") || (Config{}).ExcludesPath("/users") {
		t.Error("zero Config does not exclude exactly the default paths")
	}
}

func TestConfigEnvUnknownVariableWarning(t *testing.T) {
	c, err, logs := fromEnv(t,
		"AUDIT_BACH_SIZE=5",           // one letter missing
		"audit_batch_size=6",          // wrong case
		"AUDIT_JWT_SECRETS=x",         // one letter too many
		"AUDIT_SOMETHING_ELSE=1",      // nothing close
		"AUDIT_BACH_SIZE=7",           // repeated: warned once
		"AUDITOR=1",                   // not our prefix
		"MY_AUDIT_BATCH_SIZE=1",       // not our prefix
		"AUDIT_LOG_ANONYMOUS=true",    // known
		"AUDIT_LOG_ANONYMOUS=false",   // duplicate: first wins, like os.Getenv
		"AUDIT_CONTROL_DB_URL=host=x", // the alias is known
	)
	if err != nil {
		t.Fatalf("unknown variables must not be errors: %v", err)
	}
	if c.BatchSize != 500 || !c.LogAnonymous {
		t.Errorf("BatchSize = %d, LogAnonymous = %v", c.BatchSize, c.LogAnonymous)
	}
	out := logs.String()
	for _, want := range []string{
		`level=WARN msg="audit: unknown environment variable ignored" name=AUDIT_BACH_SIZE did_you_mean=AUDIT_BATCH_SIZE` + "\n",
		`level=WARN msg="audit: unknown environment variable ignored" name=AUDIT_JWT_SECRETS did_you_mean=AUDIT_JWT_SECRET` + "\n",
		`level=WARN msg="audit: unknown environment variable ignored" name=AUDIT_SOMETHING_ELSE` + "\n",
		`level=WARN msg="audit: unknown environment variable ignored" name=audit_batch_size did_you_mean=AUDIT_BATCH_SIZE` + "\n",
		`level=WARN msg="audit: environment variable set twice; using the first value" name=AUDIT_LOG_ANONYMOUS` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "AUDIT_BACH_SIZE"); n != 1 {
		t.Errorf("AUDIT_BACH_SIZE warned %d times", n)
	}
	for _, unwanted := range []string{"AUDITOR", "MY_AUDIT", "AUDIT_CONTROL_DB_URL"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("log mentions %s:\n%s", unwanted, out)
		}
	}
}

func TestClosestEnvVar(t *testing.T) {
	tests := map[string]string{
		"AUDIT_BATCH_SIZE":       "AUDIT_BATCH_SIZE",
		"AUDIT_BATCHSIZE":        "AUDIT_BATCH_SIZE",
		"AUDIT_QUEUE_SIZ":        "AUDIT_QUEUE_SIZE",
		"AUDIT_DB_SHEMA":         "AUDIT_DB_SCHEMA",
		"AUDIT_JWT_LEWAY":        "AUDIT_JWT_LEEWAY",
		"AUDIT_JWT_AUDIENCES":    "AUDIT_JWT_AUDIENCE",
		"AUDIT_JWT_ALGORITHM":    "AUDIT_JWT_ALGORITHMS",
		"AUDIT_BTCH_SZE":         "AUDIT_BATCH_SIZE",
		"AUDIT_BTC_SZE":          "", // three edits
		"AUDIT_":                 "",
		"AUDIT_DATABASE":         "",
		"AUDIT_TRUSTED_PROXY":    "",
		"AUDIT_TRUSTED_PROXIE":   "AUDIT_TRUSTED_PROXIES",
		"AUDIT_SKIP_METHOD":      "AUDIT_SKIP_METHODS",
		"AUDIT_CONTROL_DB_URLS":  "AUDIT_CONTROL_DB_URL",
		"AUDIT_CONNECT_TIMOUT":   "AUDIT_CONNECT_TIMEOUT",
		"AUDIT_WRITE_TIMEOUTS":   "AUDIT_WRITE_TIMEOUT",
		"AUDIT_MAX_BACKOF":       "AUDIT_MAX_BACKOFF",
		"AUDIT_TCP_KEEP_ALIVE":   "AUDIT_TCP_KEEPALIVE",
		"AUDIT_TCP_USERTIMEOUT":  "AUDIT_TCP_USER_TIMEOUT",
		"AUDIT_SPOOL_DIRS":       "AUDIT_SPOOL_DIR",
		"AUDIT_SPOOL_MAXBYTES":   "AUDIT_SPOOL_MAX_BYTES",
		"AUDIT_SPOOL_SYNCS":      "AUDIT_SPOOL_SYNC",
		"AUDIT_FAILURE_POLICIES": "",
		"AUDIT_FAILUR_POLICY":    "AUDIT_FAILURE_POLICY",
		"AUDIT_SKIP_SCHEMA_CHEK": "AUDIT_SKIP_SCHEMA_CHECK",
	}
	for in, want := range tests {
		if got := closestEnvVar(in); got != want {
			t.Errorf("closestEnvVar(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfigEnvJoinedErrors(t *testing.T) {
	_, err, _ := fromEnv(t,
		"AUDIT_BATCH_SIZE=abc",
		"AUDIT_QUEUE_SIZE=10", // not compared with a malformed batch size
		"AUDIT_FLUSH_INTERVAL=soon",
		"AUDIT_LOG_ANONYMOUS=maybe",
		"AUDIT_JWT_SECRET=tooshort",
		"AUDIT_EXCLUDE_PATHS=nope,/ok,alsonope",
	)
	if err == nil {
		t.Fatal("no error")
	}
	if !errors.Is(err, ErrConfig) {
		t.Error("joined error does not wrap ErrConfig")
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("%T is not a joined error", err)
	}
	want := []string{
		`AUDIT_LOG_ANONYMOUS: "maybe" is not a boolean (want true/false, 1/0, yes/no or on/off)`,
		`AUDIT_BATCH_SIZE: "abc" is not a whole number`,
		`AUDIT_FLUSH_INTERVAL: "soon" is not a duration (use Go syntax such as 500ms, 30s or 2m)`,
		`AUDIT_EXCLUDE_PATHS: "nope" does not start with "/"`,
		`AUDIT_EXCLUDE_PATHS: "alsonope" does not start with "/"`,
		`AUDIT_JWT_SECRET: the secret is 8 bytes; at least 32 are required, because a shorter HMAC secret can be recovered by brute force from any token it signed (RFC 7518 section 3.2)`,
	}
	var got []string
	for _, e := range joined.Unwrap() {
		if !errors.Is(e, ErrConfig) {
			t.Errorf("%v does not wrap ErrConfig", e)
		}
		got = append(got, e.Error())
	}
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err.Error() != strings.Join(want, "\n") {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestConfigEnvPublicKeyFile(t *testing.T) {
	k := keys(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, content string
		algs          []string
	}{
		{"rsa.pem", k.rsa, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}},
		{"ec256.pem", k.ec256, []string{"ES256"}},
		{"ec384.pem", k.ec384, []string{"ES384"}},
		{"ed.pem", k.ed25519, []string{"EdDSA"}},
		{"cert.pem", "# exported from the issuer\n" + k.rsaCert, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(tt.name, tt.content)
			c, err, _ := fromEnv(t, "AUDIT_JWT_PUBLIC_KEY="+path)
			if err != nil {
				t.Fatal(err)
			}
			if c.JWT.PublicKeyPEM != tt.content {
				t.Errorf("PublicKeyPEM holds %q, want the file's PEM text", c.JWT.PublicKeyPEM)
			}
			if !slices.Equal(c.JWT.Algorithms, tt.algs) {
				t.Errorf("Algorithms = %q, want %q", c.JWT.Algorithms, tt.algs)
			}
			key, err := c.JWT.PublicKey()
			if err != nil || key == nil {
				t.Errorf("PublicKey() = %v, %v", key, err)
			}
		})
	}

	private := write("private.pem", k.rsaPrivate)
	_, err, _ := fromEnv(t, "AUDIT_JWT_PUBLIC_KEY="+private)
	want := "AUDIT_JWT_PUBLIC_KEY (file " + private + "): the PEM block is a RSA PRIVATE KEY; give the public key only, a verifier must not hold the signing key"
	if err == nil || err.Error() != want {
		t.Errorf("private key file: got %v, want %s", err, want)
	}
	garbage := write("garbage.pem", "hello")
	_, err, _ = fromEnv(t, "AUDIT_JWT_PUBLIC_KEY="+garbage)
	if want := "AUDIT_JWT_PUBLIC_KEY (file " + garbage + "): no PEM block found"; err == nil || err.Error() != want {
		t.Errorf("garbage file: got %v, want %s", err, want)
	}
	missing := filepath.Join(dir, "missing.pem")
	_, err, _ = fromEnv(t, "AUDIT_JWT_PUBLIC_KEY="+missing, "AUDIT_JWT_ALGORITHMS=RS256")
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, ErrConfig) ||
		!strings.HasPrefix(err.Error(), "AUDIT_JWT_PUBLIC_KEY: is neither PEM text nor a readable file: open "+missing) {
		t.Errorf("missing file: got %v", err)
	}
	big := write("big.pem", strings.Repeat("x", 1<<20+1))
	_, err, _ = fromEnv(t, "AUDIT_JWT_PUBLIC_KEY="+big)
	if err == nil || !strings.Contains(err.Error(), "is larger than 1048576 bytes") {
		t.Errorf("big file: got %v", err)
	}
}

func TestConfigHMACSecretLength(t *testing.T) {
	tests := []struct {
		secret  string
		algs    string // AUDIT_JWT_ALGORITHMS, empty for the default
		want    []string
		wantErr string
	}{
		{secret: strings.Repeat("s", 31), wantErr: "AUDIT_JWT_SECRET: the secret is 31 bytes; at least 32 are required"},
		{secret: secret32, want: []string{"HS256"}},
		{secret: secret48, want: []string{"HS256", "HS384"}},
		{secret: secret64, want: []string{"HS256", "HS384", "HS512"}},
		{secret: secret64, algs: "hs512", want: []string{"HS512"}},
		{secret: secret32, algs: "HS512", wantErr: "AUDIT_JWT_ALGORITHMS: HS512 needs a secret of at least 64 bytes (RFC 7518 section 3.2); AUDIT_JWT_SECRET has 32"},
		{secret: "  " + secret32[:30] + "  ", want: []string{"HS256"}}, // taken verbatim: 34 bytes
	}
	for _, tt := range tests {
		env := []string{"AUDIT_JWT_SECRET=" + tt.secret}
		if tt.algs != "" {
			env = append(env, "AUDIT_JWT_ALGORITHMS="+tt.algs)
		}
		c, err, _ := fromEnv(t, env...)
		if tt.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("secret of %d bytes, algorithms %q: got %v, want %s", len(tt.secret), tt.algs, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("error reveals the secret: %v", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("secret of %d bytes: %v", len(tt.secret), err)
			continue
		}
		if c.JWT.Secret != tt.secret || !slices.Equal(c.JWT.Algorithms, tt.want) {
			t.Errorf("secret of %d bytes: Secret %q, Algorithms %q, want %q", len(tt.secret), c.JWT.Secret, c.JWT.Algorithms, tt.want)
		}
	}
}

func TestConfigEnvSkipVerificationWarning(t *testing.T) {
	_, err, logs := fromEnv(t, "AUDIT_JWT_UNSAFE_SKIP_VERIFICATION=yes")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "signatures are not verified") {
		t.Errorf("no warning about skipped verification: %s", logs)
	}
}

func TestConfigEnvJWTSettingsWithoutKeyWarning(t *testing.T) {
	c, err, logs := fromEnv(t, "AUDIT_JWT_ISSUER=https://issuer.example/", "AUDIT_JWT_ALGORITHMS=RS256")
	if err != nil {
		t.Fatal(err)
	}
	if c.JWT.Issuer != "https://issuer.example/" || !slices.Equal(c.JWT.Algorithms, []string{"RS256"}) {
		t.Errorf("JWT = %+v", c.JWT)
	}
	for _, name := range []string{"AUDIT_JWT_ISSUER", "AUDIT_JWT_ALGORITHMS"} {
		if !strings.Contains(logs.String(), `msg="audit: JWT setting has no effect without a key" name=`+name) {
			t.Errorf("no warning for %s: %s", name, logs)
		}
	}
}

func TestConfigValidateNamesFields(t *testing.T) {
	k := keys(t)
	tests := []struct {
		name string
		c    Config
		want string
	}{
		{"database", Config{DatabaseURL: "nonsense"}, "DatabaseURL: is not a valid PostgreSQL URL or key=value connection string: invalid keyword/value"},
		{"schema", Config{Schema: "a b"}, `Schema: "a b" is not a plain identifier (letters, digits and underscore, not starting with a digit)`},
		{"redact", Config{RedactFields: []string{""}}, `RedactFields: pattern "" has no letter or digit (keys are compared by their words of letters and digits), so it would match nothing`},
		{"allow", Config{RedactAllow: []string{" \t"}}, `RedactAllow: key " \t" has no letter or digit (keys are compared by their words of letters and digits), so it would exempt nothing`},
		{"exclude", Config{ExcludePaths: []string{"*"}}, `ExcludePaths: "*" does not start with "/"`},
		{"alias target", Config{ActorTypeAliases: map[string]ActorType{"bot": "robot"}}, `ActorTypeAliases: alias "bot" maps to "robot", which is not an actor type (want platform_admin, tenant_user, service, system or anonymous)`},
		{"alias empty", Config{ActorTypeAliases: map[string]ActorType{" ": ActorService}}, `ActorTypeAliases: empty alias`},
		{"alias case", Config{ActorTypeAliases: map[string]ActorType{"Bot": ActorService, "bot": ActorSystem}}, `ActorTypeAliases: aliases "Bot" and "bot" differ only in case`},
		{"alias defined", Config{ActorTypeAliases: map[string]ActorType{"System": ActorPlatformAdmin}}, `ActorTypeAliases: alias "System" is a defined actor type and cannot be redefined`},
		{"body", Config{MaxBodySizeBytes: -1}, `MaxBodySizeBytes: -1 is out of range 1..10485760`},
		{"secret", Config{JWT: JWTConfig{Secret: "x"}}, `JWT.Secret: the secret is 1 bytes; at least 32 are required, because a shorter HMAC secret can be recovered by brute force from any token it signed (RFC 7518 section 3.2)`},
		{"pem", Config{JWT: JWTConfig{PublicKeyPEM: "/etc/key.pem"}}, `JWT.PublicKeyPEM: no PEM block found (the field holds the PEM text itself, not a file path)`},
		{"two keys", Config{JWT: JWTConfig{PublicKeyPEM: k.rsa, JWKSURL: "https://x.example/jwks"}}, `JWT.PublicKeyPEM: only one key source may be set, and JWT.JWKSURL is set too`},
		{"three keys", Config{JWT: JWTConfig{Secret: secret32, PublicKeyPEM: k.rsa, JWKSURL: "https://x.example/jwks"}}, `JWT.Secret: only one key source may be set, and JWT.PublicKeyPEM and JWT.JWKSURL are set too`},
		{"jwks", Config{JWT: JWTConfig{JWKSURL: "https:///jwks"}}, `JWT.JWKSURL: "https:///jwks" is not an absolute http or https URL`},
		{"audience", Config{JWT: JWTConfig{Audience: []string{""}}}, `JWT.Audience: empty audience`},
		{"issuer control", Config{JWT: JWTConfig{Issuer: "https://issuer.example/\n"}}, `JWT.Issuer: "https://issuer.example/\n" contains a control character`},
		{"issuer blank", Config{JWT: JWTConfig{Issuer: " \u00a0"}}, `JWT.Issuer: " \u00a0" is only white space`},
		{"issuers", Config{JWT: JWTConfig{Issuer: "https://a.example https://b.example"}}, `JWT.Issuer: "https://a.example https://b.example" is not a single URL; only one issuer can be configured, and it must equal the token's iss claim`},
		{"claims", Config{JWT: JWTConfig{Claims: ClaimNames{TenantID: " org"}}}, `JWT.Claims: tenant_id: claim name " org" contains spaces`},
		{"alg case", Config{JWT: JWTConfig{Secret: secret32, Algorithms: []string{"hs256"}}}, `JWT.Algorithms: unknown algorithm "hs256" (algorithm names are case-sensitive; did you mean "HS256"?)`},
		{"alg none", Config{JWT: JWTConfig{UnsafeSkipVerification: true, Algorithms: []string{"None"}}}, `JWT.Algorithms: "none" means an unsigned token and is never accepted (JWT.UnsafeSkipVerification exists for tokens verified by a gateway)`},
		{"alg ed", Config{JWT: JWTConfig{PublicKeyPEM: k.ed25519, Algorithms: []string{"ES256"}}}, `JWT.Algorithms: ES256 cannot be used with an Ed25519 public key (allowed: EdDSA); accepting it would open the door to algorithm-confusion attacks`},
		{"leeway", Config{JWT: JWTConfig{Leeway: -time.Second}}, `JWT.Leeway: -1s is negative`},
		{"skip with key", Config{JWT: JWTConfig{JWKSURL: "https://x.example/jwks", UnsafeSkipVerification: true}}, `JWT.UnsafeSkipVerification: cannot be combined with JWT.JWKSURL: either verify tokens or skip verification`},
		{"proxy", Config{TrustedProxies: []string{"10.0.0.300"}}, `TrustedProxies: "10.0.0.300" is not a valid IP address or CIDR prefix`},
		{"tenant header", Config{TenantHeader: "X-Tenant\n"}, `TenantHeader: "X-Tenant\n" is not a valid header name`},
		{"method case", Config{SkipMethods: []string{"options"}}, `SkipMethods: "options" is not upper case (methods are case-sensitive; did you mean "OPTIONS"?)`},
		{"method", Config{SkipMethods: []string{""}}, `SkipMethods: "" is not a valid HTTP method`},
		{"batch", Config{BatchSize: 200000}, `BatchSize: 200000 is out of range 1..100000`},
		{"flush", Config{FlushInterval: time.Microsecond}, `FlushInterval: 1µs is shorter than 1ms`},
		{"queue", Config{BatchSize: 600, QueueSize: 599}, `QueueSize: 599 is smaller than BatchSize (600); the queue must hold at least one batch`},
		{"queue range", Config{QueueSize: -1}, `QueueSize: -1 is out of range 1..10000000`},
		{"connect", Config{ConnectTimeout: -time.Second}, `ConnectTimeout: -1s is out of range 100ms..5m0s`},
		{"attempt", Config{AttemptTimeout: time.Millisecond}, `AttemptTimeout: 1ms is out of range 100ms..10m0s`},
		{"backoff", Config{MaxBackoff: time.Hour}, `MaxBackoff: 1h0m0s is out of range 10ms..5m0s`},
		{"keepalive", Config{TCPKeepAlive: 3 * time.Hour}, `TCPKeepAlive: 3h0m0s is out of range 1s..2h0m0s (or "off")`},
		{"user timeout", Config{TCPUserTimeout: time.Millisecond}, `TCPUserTimeout: 1ms is out of range 1s..1h0m0s (or "off")`},
		{"spool bytes", Config{Spool: SpoolConfig{MaxBytes: -5}}, `Spool.MaxBytes: -5 bytes is less than the minimum of 1 MiB (1048576)`},
		{"spool sync", Config{Spool: SpoolConfig{Sync: "Batch"}}, `Spool.Sync: "Batch" is not a sync mode (want batch, interval or never)`},
		{"spool interval", Config{Spool: SpoolConfig{SyncInterval: -time.Second}}, `Spool.SyncInterval: -1s is out of range 1ms..1h0m0s`},
		{"policy", Config{FailurePolicy: 7}, `FailurePolicy: FailurePolicy(7) is not a failure policy (want FailOpen or FailClosed)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if err == nil {
				t.Fatalf("no error for %+v", tt.c)
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error does not wrap ErrConfig: %v", err)
			}
			if err.Error() != tt.want {
				t.Errorf("\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}

func TestConfigValidateGood(t *testing.T) {
	k := keys(t)
	tests := []Config{
		{DatabaseURL: "postgres://u:p@localhost/app", Schema: "audit"},
		{ExcludePaths: []string{"/", "/*", "/a*"}},
		{ActorTypeAliases: map[string]ActorType{"ops_admin": ActorPlatformAdmin, "Bot": ActorService}},
		{JWT: JWTConfig{PublicKeyPEM: k.rsa, Algorithms: []string{"PS256"}, Issuer: "i", Audience: []string{"a"}}},
		{JWT: JWTConfig{Secret: secret48, Algorithms: []string{"HS384"}, Leeway: 5 * time.Minute}},
		{JWT: JWTConfig{UnsafeSkipVerification: true, Algorithms: []string{"HS256", "RS256"}}},
		{JWT: JWTConfig{Algorithms: []string{"RS256"}}},                         // a key supplied to the middleware directly
		{JWT: JWTConfig{Algorithms: []string{"RS256"}, Issuer: "Example Corp"}}, // iss need not be a URL
		{TrustedProxies: []string{"0.0.0.0/0", "::/0", "10.1.2.3/8"}},
		{TenantHeader: "X-Tenant-ID", SkipMethods: []string{"OPTIONS", "HEAD", "PROPFIND"}},
		{BatchSize: 100000, FlushInterval: time.Millisecond},
		{BatchSize: 1, QueueSize: 1},
		{DisableORMDiffs: true, LogAnonymous: true, CaptureRequestBody: true, CaptureResponseBody: true, MaxBodySizeBytes: 1},
		{ConnectTimeout: 100 * time.Millisecond, AttemptTimeout: 10 * time.Minute, MaxBackoff: 10 * time.Millisecond},
		{TCPKeepAlive: -1, TCPUserTimeout: -1},
		{TCPKeepAlive: time.Second, TCPUserTimeout: time.Hour},
		{Spool: SpoolConfig{Dir: "spool", MaxBytes: 1 << 20, Sync: "interval", SyncInterval: time.Millisecond}},
		{FailurePolicy: FailClosed, SkipSchemaCheck: true},
	}
	for i, c := range tests {
		if err := c.Validate(); err != nil {
			t.Errorf("case %d: %+v: %v", i, c, err)
		}
	}
}

func TestJWTConfigPublicKey(t *testing.T) {
	k := keys(t)
	if key, err := (JWTConfig{}).PublicKey(); key != nil || err != nil {
		t.Errorf("empty PEM: %v, %v", key, err)
	}
	for name, pemText := range map[string]string{"rsa": k.rsa, "pkcs1": k.rsaPKCS1, "cert": k.rsaCert} {
		key, err := (JWTConfig{PublicKeyPEM: pemText}).PublicKey()
		if _, ok := key.(*rsa.PublicKey); !ok || err != nil {
			t.Errorf("%s: PublicKey() = %T, %v", name, key, err)
		}
	}
	if key, err := (JWTConfig{PublicKeyPEM: k.ec256}).PublicKey(); err != nil {
		t.Error(err)
	} else if _, ok := key.(*ecdsa.PublicKey); !ok {
		t.Errorf("ec256: %T", key)
	}
	if key, err := (JWTConfig{PublicKeyPEM: k.ed25519}).PublicKey(); err != nil {
		t.Error(err)
	} else if _, ok := key.(ed25519.PublicKey); !ok {
		t.Errorf("ed25519: %T", key)
	}
	if _, err := (JWTConfig{PublicKeyPEM: "junk"}).PublicKey(); err == nil {
		t.Error("junk PEM: no error")
	}
}

func TestConfigLogValue(t *testing.T) {
	tests := []struct {
		url, want string
	}{
		{"postgres://audit:hunter2@db:5432/app?sslmode=require", `database_url="postgres://audit:xxxxx@db:5432/app?sslmode=require"`},
		{"postgres://db/app?user=a&password=hunter2", `database_url="postgres://db/app?user=a&password=xxxxx"`},
		{"host=db password=hunter2 user=audit", `database_url="host=db password=xxxxx user=audit"`},
		{"host=db password='hun ter2' user=audit", `database_url="host=db password=xxxxx user=audit"`},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&buf, nil))
		c := Config{DatabaseURL: tt.url, JWT: JWTConfig{Secret: "hunter2-" + secret32}}
		logger.Info("config", "audit", c)
		out := buf.String()
		if strings.Contains(out, "hunter2") || strings.Contains(out, "ter2") {
			t.Errorf("log reveals a secret: %s", out)
		}
		if !strings.Contains(out, tt.want) || !strings.Contains(out, "audit.jwt.secret=REDACTED") {
			t.Errorf("log lacks %s: %s", tt.want, out)
		}
	}

	var buf bytes.Buffer
	c := Config{TCPKeepAlive: -1, Spool: SpoolConfig{Dir: "/spool"}, FailurePolicy: FailClosed}.WithDefaults()
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "audit", c)
	for _, want := range []string{
		"audit.connect_timeout=5s", "audit.attempt_timeout=5s", "audit.max_backoff=1s",
		"audit.tcp_keepalive=off", "audit.tcp_user_timeout=10s", "audit.spool.dir=/spool",
		"audit.spool.max_bytes=1073741824", "audit.spool.sync=batch", "audit.spool.sync_interval=1s",
		"audit.failure_policy=closed", "audit.skip_schema_check=false",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %s: %s", want, buf.String())
		}
	}
}

func TestConfigRedactor(t *testing.T) {
	c, err, _ := fromEnv(t, "AUDIT_REDACT_FIELDS=iban", "AUDIT_REDACT_ALLOW=token_type")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redactor()
	for key, want := range map[string]bool{"iban_number": true, "password": true, "token_type": false, "name": false} {
		if got := r.Sensitive(key); got != want {
			t.Errorf("Sensitive(%q) = %v, want %v", key, got, want)
		}
	}
}

// TestConfigListsMeanTheSameFromStructAndEnv: every list-valued setting follows one rule whether it
// is set in the struct or through its environment variable: the same items give the same
// completed Config, and so the same behaviour (defaults merged in the same way, or none).
func TestConfigListsMeanTheSameFromStructAndEnv(t *testing.T) {
	withKey := func(c Config) Config { c.JWT.Secret = secret32; return c }
	keyEnv := "AUDIT_JWT_SECRET=" + secret32
	tests := []struct {
		name    string
		env     []string
		struct_ Config
	}{
		{"ExcludePaths", []string{"AUDIT_EXCLUDE_PATHS=/internal/*,/ping"},
			Config{ExcludePaths: []string{"/internal/*", "/ping"}}},
		{"ExcludePaths repeating a default", []string{"AUDIT_EXCLUDE_PATHS=/health,/ping"},
			Config{ExcludePaths: []string{"/health", "/ping"}}},
		{"ExcludePaths without the defaults", []string{"AUDIT_EXCLUDE_PATHS=/ping", "AUDIT_EXCLUDE_DEFAULT_PATHS=false"},
			Config{ExcludePaths: []string{"/ping"}, DisableDefaultExcludePaths: true}},
		{"no default ExcludePaths at all", []string{"AUDIT_EXCLUDE_DEFAULT_PATHS=false"},
			Config{DisableDefaultExcludePaths: true}},
		{"RedactFields", []string{"AUDIT_REDACT_FIELDS=iban,pin"}, Config{RedactFields: []string{"iban", "pin"}}},
		{"RedactAllow", []string{"AUDIT_REDACT_ALLOW=token_type"}, Config{RedactAllow: []string{"token_type"}}},
		{"TrustedProxies", []string{"AUDIT_TRUSTED_PROXIES=10.0.0.0/8,2001:db8::1"},
			Config{TrustedProxies: []string{"10.0.0.0/8", "2001:db8::1"}}},
		{"SkipMethods", []string{"AUDIT_SKIP_METHODS=OPTIONS,HEAD"}, Config{SkipMethods: []string{"OPTIONS", "HEAD"}}},
		{"ActorTypeAliases", []string{"AUDIT_ACTOR_TYPE_ALIASES=bot=service"},
			Config{ActorTypeAliases: map[string]ActorType{"bot": ActorService}}},
		{"JWT.Audience", []string{keyEnv, "AUDIT_JWT_AUDIENCE=api,admin"},
			withKey(Config{JWT: JWTConfig{Audience: []string{"api", "admin"}}})},
		{"JWT.Algorithms", []string{keyEnv, "AUDIT_JWT_ALGORITHMS=HS256"},
			withKey(Config{JWT: JWTConfig{Algorithms: []string{"HS256"}}})},
	}
	paths := []string{"/health", "/metrics", "/docs", "/openapi.json", "/redoc", "/internal/jobs", "/ping", "/users"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fromEnvironment, err, _ := fromEnv(t, tt.env...)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.struct_.Validate(); err != nil {
				t.Fatal(err)
			}
			fromStruct := tt.struct_
			fromStruct.Logger = fromEnvironment.Logger
			if d := fromStruct.WithDefaults(); !reflect.DeepEqual(d, fromEnvironment) {
				t.Errorf("struct:\n%+v\nenvironment:\n%+v", d, fromEnvironment)
			}
			for _, p := range paths {
				if s, e := tt.struct_.ExcludesPath(p), fromEnvironment.ExcludesPath(p); s != e {
					t.Errorf("ExcludesPath(%q): %v from the struct, %v from the environment", p, s, e)
				}
			}
		})
	}
}

// TestConfigExcludePathsRule: the defaults always apply unless DisableDefaultExcludePaths is set;
// ExcludePaths adds to them, whether WithDefaults ran or not.
func TestConfigExcludePathsRule(t *testing.T) {
	tests := []struct {
		cfg      Config
		excluded []string
		audited  []string
	}{
		{Config{}, DefaultExcludePaths, []string{"/ping", "/users"}},
		{Config{ExcludePaths: []string{}}, DefaultExcludePaths, []string{"/ping"}},
		{Config{ExcludePaths: []string{"/ping", "/internal/*"}}, append([]string{"/ping", "/internal/x"}, DefaultExcludePaths...), []string{"/users"}},
		{Config{ExcludePaths: []string{"/ping"}, DisableDefaultExcludePaths: true}, []string{"/ping"}, append([]string{"/users"}, DefaultExcludePaths...)},
		{Config{DisableDefaultExcludePaths: true}, nil, append([]string{"/ping"}, DefaultExcludePaths...)},
	}
	for _, tt := range tests {
		for _, c := range []Config{tt.cfg, tt.cfg.WithDefaults(), tt.cfg.WithDefaults().WithDefaults()} {
			for _, p := range tt.excluded {
				if !c.ExcludesPath(p) {
					t.Errorf("%+v: %q is audited, want excluded", tt.cfg, p)
				}
			}
			for _, p := range tt.audited {
				if c.ExcludesPath(p) {
					t.Errorf("%+v: %q is excluded, want audited", tt.cfg, p)
				}
			}
		}
	}
	if _, err, _ := fromEnv(t, "AUDIT_EXCLUDE_DEFAULT_PATHS=maybe"); err == nil || !strings.Contains(err.Error(), "AUDIT_EXCLUDE_DEFAULT_PATHS") {
		t.Errorf("a malformed AUDIT_EXCLUDE_DEFAULT_PATHS: %v", err)
	}
}

// signingKeyPEM returns a new Ed25519 private key and its PKCS#8 PEM text.
func signingKeyPEM(t *testing.T) (ed25519.PrivateKey, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// TestConfigEnvChain: AUDIT_SIGNING_KEY as inline PEM (with literal \n) or as a file path gives
// the same key; AUDIT_CHAIN, AUDIT_CHECKPOINT_INTERVAL and AUDIT_CHECKPOINT_WEBHOOK are read.
func TestConfigEnvChain(t *testing.T) {
	priv, text := signingKeyPEM(t)
	file := filepath.Join(t.TempDir(), "signing.pem")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{
		"inline":         text,
		"inline escaped": strings.ReplaceAll(strings.TrimSpace(text), "\n", `\n`),
		"file":           file,
	} {
		c, err, _ := fromEnv(t, "AUDIT_SIGNING_KEY="+v, "AUDIT_CHAIN=false", "AUDIT_CHECKPOINT_INTERVAL=5s",
			"AUDIT_CHECKPOINT_WEBHOOK=https://keeper.example/checkpoints")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := c.ChainSigningKey()
		if err != nil || !priv.Equal(got) {
			t.Errorf("%s: ChainSigningKey() = %v, %v; want the key", name, got, err)
		}
		pub, err := c.ChainPublicKey()
		if err != nil || !priv.Public().(ed25519.PublicKey).Equal(pub) {
			t.Errorf("%s: ChainPublicKey() = %v, %v", name, pub, err)
		}
		if !c.Chain.Disabled || c.Chain.CheckpointInterval != 5*time.Second || c.Chain.CheckpointWebhook != "https://keeper.example/checkpoints" {
			t.Errorf("%s: Chain = %+v", name, c.Chain)
		}
	}
	c, err, _ := fromEnv(t)
	if err != nil || c.Chain.Disabled || c.Chain.CheckpointInterval != time.Minute || c.Chain.SigningKey != "" {
		t.Errorf("defaults: %+v, %v", c.Chain, err)
	}
	if k, err := c.ChainSigningKey(); k != nil || err != nil {
		t.Errorf("no key: ChainSigningKey() = %v, %v", k, err)
	}
}

// TestConfigEnvChainErrors: every bad chain setting is an error naming its variable (and the file
// a key came from).
func TestConfigEnvChainErrors(t *testing.T) {
	_, signing := signingKeyPEM(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	rsaPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	rsaFile := filepath.Join(t.TempDir(), "rsa.pem")
	if err := os.WriteFile(rsaFile, []byte(rsaPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("x")}))
	tests := []struct {
		env  []string
		want string
	}{
		{[]string{"AUDIT_SIGNING_KEY=" + rsaPEM}, "AUDIT_SIGNING_KEY: the key is an RSA key; checkpoints are signed with Ed25519"},
		{[]string{"AUDIT_SIGNING_KEY=" + rsaFile}, "AUDIT_SIGNING_KEY (file " + rsaFile + "): the key is an RSA key"},
		{[]string{"AUDIT_SIGNING_KEY=" + pub}, `AUDIT_SIGNING_KEY: the PEM block is "PUBLIC KEY"`},
		{[]string{"AUDIT_SIGNING_KEY=-----BEGIN PRIVATE KEY-----garbage"}, "AUDIT_SIGNING_KEY: no PEM block found"},
		{[]string{"AUDIT_SIGNING_KEY=/nonexistent/key.pem"}, "AUDIT_SIGNING_KEY: is neither PEM text nor a readable file"},
		{[]string{"AUDIT_CHAIN=maybe"}, `AUDIT_CHAIN: "maybe" is not a boolean`},
		{[]string{"AUDIT_CHECKPOINT_INTERVAL=500ms"}, "AUDIT_CHECKPOINT_INTERVAL: 500ms is out of range 1s..24h0m0s"},
		{[]string{"AUDIT_CHECKPOINT_INTERVAL=0"}, "AUDIT_CHECKPOINT_INTERVAL: 0s is out of range"},
		{[]string{"AUDIT_CHECKPOINT_INTERVAL=soon"}, `AUDIT_CHECKPOINT_INTERVAL: "soon" is not a duration`},
		{[]string{"AUDIT_SIGNING_KEY=" + signing, "AUDIT_CHECKPOINT_WEBHOOK=http://keeper.example/c"}, "AUDIT_CHECKPOINT_WEBHOOK: \"http://keeper.example/c\" uses http on a host that is not a loopback address"},
		{[]string{"AUDIT_SIGNING_KEY=" + signing, "AUDIT_CHECKPOINT_WEBHOOK=ftp://keeper/c"}, "AUDIT_CHECKPOINT_WEBHOOK: \"ftp://keeper/c\" is not an absolute http or https URL"},
		{[]string{"AUDIT_CHECKPOINT_WEBHOOK=https://keeper.example/c"}, "AUDIT_CHECKPOINT_WEBHOOK: is set but AUDIT_SIGNING_KEY is not"},
	}
	for _, tt := range tests {
		_, err, _ := fromEnv(t, tt.env...)
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%.60q: error %v; want one containing %q", tt.env, err, tt.want)
		}
	}
	// Loopback http is allowed, for a local relay.
	for _, u := range []string{"http://127.0.0.1:9000/c", "http://[::1]/c", "http://localhost/c"} {
		if _, err, _ := fromEnv(t, "AUDIT_SIGNING_KEY="+signing, "AUDIT_CHECKPOINT_WEBHOOK="+u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	// Validate names the field, and says the field holds PEM text, not a path.
	err = Config{Chain: ChainConfig{SigningKey: "/etc/key.pem", CheckpointInterval: time.Millisecond}}.Validate()
	for _, want := range []string{"Chain.SigningKey: no PEM block found", "not a file path", "Chain.CheckpointInterval: 1ms is out of range"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to contain %q", err, want)
		}
	}
}

// TestConfigLogValueChain: the signing key is shown by its key id, never its text, and the
// webhook's query (which may hold a token) is left out.
func TestConfigLogValueChain(t *testing.T) {
	priv, text := signingKeyPEM(t)
	var buf bytes.Buffer
	c := Config{Chain: ChainConfig{SigningKey: text, CheckpointWebhook: "https://u:pw@keeper.example/c?token=hunter2"}}.WithDefaults()
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "audit", c)
	out := buf.String()
	id := KeyID(priv.Public().(ed25519.PublicKey))
	for _, want := range []string{`audit.chain.signing_key="ed25519 ` + id + `"`, "audit.chain.enabled=true", "audit.chain.checkpoint_interval=1m0s",
		"audit.chain.checkpoint_webhook=https://u:xxxxx@keeper.example/c?REDACTED"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s: %s", want, out)
		}
	}
	body := strings.Split(strings.TrimSpace(text), "\n")[1]
	if strings.Contains(out, body[:20]) || strings.Contains(out, "hunter2") || strings.Contains(out, "pw@") {
		t.Errorf("log reveals a secret: %s", out)
	}
}

// TestConfigErasureFromEnv: AUDIT_PII_MASTER_KEY takes the base64 key or a file holding it,
// AUDIT_PII_FIELDS a list; a bad key, or fields without a key, are errors that name the variable.
func TestConfigErasureFromEnv(t *testing.T) {
	key := make([]byte, MasterKeySize)
	_, _ = rand.Read(key)
	b64 := base64.StdEncoding.EncodeToString(key)
	file := filepath.Join(t.TempDir(), "pii.key")
	if err := os.WriteFile(file, []byte(b64+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{b64, file} {
		c, err := ConfigFromEnvironment([]string{"AUDIT_PII_MASTER_KEY=" + v, "AUDIT_PII_FIELDS=email, phone"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Erasure.MasterKey != b64 || !slices.Equal(c.Erasure.PersonalFields, []string{"email", "phone"}) {
			t.Fatalf("%s: erasure %+v", v, c.Erasure)
		}
		if p, err := c.PIICipher(); err != nil || p == nil {
			t.Fatalf("PIICipher: %v, %v", p, err)
		}
	}
	for env, want := range map[string]string{
		"AUDIT_PII_MASTER_KEY=" + base64.StdEncoding.EncodeToString(key[:16]): "AUDIT_PII_MASTER_KEY",
		"AUDIT_PII_MASTER_KEY=/no/such/file":                                  "AUDIT_PII_MASTER_KEY",
		"AUDIT_PII_FIELDS=email":                                              "AUDIT_PII_FIELDS",
	} {
		if _, err := ConfigFromEnvironment([]string{env}, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one naming %s", env, err, want)
		}
	}
	if err := (Config{Erasure: ErasureConfig{MasterKey: "short"}}).Validate(); err == nil || !strings.Contains(err.Error(), "Erasure.MasterKey") {
		t.Errorf("Validate: %v", err)
	}
	if p, err := (Config{}).PIICipher(); p != nil || err != nil {
		t.Errorf("no key: %v, %v", p, err)
	}
	if s := fmt.Sprint(Config{Erasure: ErasureConfig{MasterKey: b64}}.LogValue()); strings.Contains(s, b64) {
		t.Errorf("LogValue shows the master key: %s", s)
	}
}
