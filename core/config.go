package core

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrConfig is wrapped by every configuration problem that ConfigFromEnv, ConfigFromEnvironment
// and Config.Validate report, so callers can test for it with errors.Is.
var ErrConfig = errors.New("invalid audit configuration")

// DefaultExcludePaths are the request paths that are not audited unless the configuration says
// otherwise: health checks, metrics and API documentation, which are polled often and change nothing.
// Each is an exact match (see Config.ExcludePaths).
var DefaultExcludePaths = []string{"/health", "/metrics", "/docs", "/openapi.json", "/redoc"}

// The defaults that Config.WithDefaults fills in.
const (
	DefaultSchema           = "public"
	DefaultMaxBodySizeBytes = 10000
	DefaultJWTLeeway        = 30 * time.Second
	DefaultBatchSize        = 500
	DefaultFlushInterval    = time.Second
	DefaultQueueSize        = 10000

	DefaultConnectTimeout    = 5 * time.Second
	DefaultAttemptTimeout    = 5 * time.Second
	DefaultMaxBackoff        = time.Second
	DefaultTCPKeepAlive      = 5 * time.Second
	DefaultTCPUserTimeout    = 10 * time.Second
	DefaultSpoolMaxBytes     = 1 << 30 // 1 GiB
	DefaultSpoolSync         = "batch"
	DefaultSpoolSyncInterval = time.Second

	DefaultCheckpointInterval = time.Minute
)

// Limits that Validate enforces.
const (
	maxBodySizeLimit = 10 << 20 // 10 MiB: a body is held in memory per request and stored in a jsonb column
	maxBatchSize     = 100000
	maxQueueSize     = 10000000 // a typo must not let gigabytes of records queue up while the database is down
	minFlushInterval = time.Millisecond
	maxJWTLeeway     = 5 * time.Minute
	minHMACSecret    = 32 // bytes, the output size of SHA-256 (RFC 7518 section 3.2)
	minRSABits       = 2048
	maxPEMFileSize   = 1 << 20

	minConnectTimeout     = 100 * time.Millisecond
	maxConnectTimeout     = 5 * time.Minute
	minAttemptTimeout     = 100 * time.Millisecond
	maxAttemptTimeout     = 10 * time.Minute
	minMaxBackoff         = 10 * time.Millisecond
	maxMaxBackoff         = 5 * time.Minute
	minTCPKeepAlive       = time.Second // the kernel counts keepalive times in whole seconds
	maxTCPKeepAlive       = 2 * time.Hour
	minTCPUserTimeout     = time.Second
	maxTCPUserTimeout     = time.Hour
	minSpoolMaxBytes      = 1 << 20 // 1 MiB
	minSpoolSyncInterval  = time.Millisecond
	maxSpoolSyncInterval  = time.Hour
	minCheckpointInterval = time.Second
	maxCheckpointInterval = 24 * time.Hour
)

// Config configures auditing. It is a plain struct: build it by hand, or read it from the AUDIT_*
// environment variables with ConfigFromEnv. The zero value is useful: every field documents what
// its zero value means, and WithDefaults returns a copy with those defaults filled in. Validate
// reports every problem at once.
type Config struct {
	// DatabaseURL is the PostgreSQL connection string for the audit_logs table, either a URL
	// (postgres://user:pass@host:5432/db?sslmode=verify-full) or a key=value DSN
	// (host=db user=audit dbname=app). Empty means the application supplies its own pool or sink.
	// Validate parses it but never connects.
	// Environment: AUDIT_DATABASE_URL, or its alias AUDIT_CONTROL_DB_URL.
	DatabaseURL string

	// Schema is the PostgreSQL schema that holds audit_logs. Empty means "public". It must be a
	// lower-case identifier (letters, digits, underscore; at most 63 bytes; not starting with a
	// digit or "pg_") so that it names the same schema whether or not it is quoted.
	// Environment: AUDIT_DB_SCHEMA.
	Schema string

	// RedactFields are key patterns redacted in addition to the built-in defaults (password,
	// token, secret, ...). Only the user's patterns are stored here; NewRedactor merges them with
	// the defaults. Nil means only the defaults. Environment: AUDIT_REDACT_FIELDS (comma list).
	RedactFields []string

	// RedactAllow are keys exempted from redaction although they match a pattern. Nil means none.
	// Environment: AUDIT_REDACT_ALLOW (comma list).
	RedactAllow []string

	// ExcludePaths are request paths that are not audited, matched against the request's URL path
	// (without the query string). An entry without "*" matches only that exact path: "/health"
	// excludes "/health" but neither "/health/live" nor "/healthz". An entry ending in "*" is a
	// prefix: "/internal/*" excludes "/internal/" and everything below it, "/docs*" excludes
	// "/docs", "/docs/" and "/docsearch". "*" may appear only at the end. Every entry starts with "/".
	//
	// The entries add to DefaultExcludePaths, which are excluded as well unless
	// DisableDefaultExcludePaths is set; set here or through the environment, the list means the
	// same. Nil means only the defaults. Environment: AUDIT_EXCLUDE_PATHS (comma list).
	ExcludePaths []string

	// DisableDefaultExcludePaths audits the paths of DefaultExcludePaths too, so that only
	// ExcludePaths are left out. The default (false) excludes them; the field is negative so that
	// the zero value keeps them excluded. Environment: AUDIT_EXCLUDE_DEFAULT_PATHS (default true;
	// false audits them).
	DisableDefaultExcludePaths bool

	// ActorTypeAliases maps actor_type claim values that are not one of the defined actor types to
	// one that is, for example {"ops_admin": ActorPlatformAdmin, "bot": ActorService}. Claim values
	// are matched exactly (no case folding, no trimming) against the defined types and then these
	// keys; keys cannot redefine a defined type, even in another case. Nil means no aliases.
	// Environment: AUDIT_ACTOR_TYPE_ALIASES (ops_admin=platform_admin,bot=service).
	ActorTypeAliases map[string]ActorType

	// CaptureRequestBody stores request bodies (size-capped, redacted). Default false.
	// Environment: AUDIT_CAPTURE_REQUEST_BODY.
	CaptureRequestBody bool

	// CaptureResponseBody stores response bodies (size-capped, redacted). Default false.
	// Environment: AUDIT_CAPTURE_RESPONSE_BODY.
	CaptureResponseBody bool

	// DisableORMDiffs turns off recording of row changes made through GORM or ent. The default
	// (false) records them; the field is negative so that the zero value keeps them on. Read it
	// through CaptureORMDiffs. Environment: AUDIT_CAPTURE_ORM_DIFFS (default true). It reaches
	// gormaudit and entaudit through the Writer that Open returns (Writer.CaptureORMDiffs), or
	// through their own Options.DisableORMDiffs; HTTP records are written either way.
	DisableORMDiffs bool

	// LogAnonymous records HTTP requests that carry no actor. Default false: requests without an
	// identity are not recorded (a request whose token failed verification is always recorded).
	// Environment: AUDIT_LOG_ANONYMOUS.
	LogAnonymous bool

	// MaxBodySizeBytes caps how much of a request or response body is captured; the rest is
	// marked truncated. Zero means 10000; at most 10 MiB. Environment: AUDIT_MAX_BODY_SIZE_BYTES.
	MaxBodySizeBytes int

	// JWT configures how the HTTP middleware establishes the actor from a bearer token.
	JWT JWTConfig

	// TrustedProxies are the IP addresses and CIDR prefixes (10.0.0.0/8, 2001:db8::1) of reverse
	// proxies whose X-Forwarded-For / X-Real-IP headers are believed. Empty means no proxy is
	// trusted: the Gin middleware records the socket's remote address, because a forwarding header
	// from an untrusted peer could name any address. Environment: AUDIT_TRUSTED_PROXIES (comma list).
	TrustedProxies []string

	// TenantHeader names a request header (for example X-Tenant-ID) from which the middleware takes
	// the tenant id when the token carries none. Empty (the default) means the header is not read.
	// Any client can send any header: use it only behind a gateway that sets or strips it, never as
	// the sole tenant boundary. Environment: AUDIT_TENANT_HEADER.
	TenantHeader string

	// SkipMethods are HTTP methods that are not audited, for example OPTIONS and HEAD. Methods are
	// case-sensitive tokens, so entries must be upper case. Nil means every method is audited.
	// Environment: AUDIT_SKIP_METHODS (comma list, upper-cased).
	SkipMethods []string

	// BatchSize is how many records the writer sends to PostgreSQL at most in one COPY. Zero means
	// 500; the range is 1..100000. Environment: AUDIT_BATCH_SIZE.
	BatchSize int

	// FlushInterval is how long the writer waits for a batch to fill before writing what it has.
	// Zero means 1s; at least 1ms. Environment: AUDIT_FLUSH_INTERVAL (Go duration syntax: 500ms, 2s).
	FlushInterval time.Duration

	// QueueSize is how many records the writer buffers; records offered while it is full are
	// refused and counted, never waited for. Zero means 10000, or BatchSize if that is larger. It
	// must hold at least one batch; at most 10000000. With one batch per worker being written and
	// one waiting for a worker, a writer holds at most QueueSize + (WriterOptions.Workers+1)×BatchSize
	// records in memory however long the database is down: QueueSize + 3×BatchSize with the two
	// workers of Open. Environment: AUDIT_QUEUE_SIZE.
	QueueSize int

	// ConnectTimeout bounds establishing one connection to PostgreSQL: the TCP dial, TLS and
	// authentication. Zero means 5s; the range is 100ms..5m. It also bounds the schema check Open
	// runs (with AttemptTimeout for its queries). Environment: AUDIT_CONNECT_TIMEOUT.
	ConnectTimeout time.Duration

	// AttemptTimeout bounds one write attempt (one COPY of a batch); an attempt that runs out is
	// retried like a lost connection. Keep it, and ConnectTimeout, shorter than the deadline given
	// to Writer.Close at shutdown. Zero means 5s; the range is 100ms..10m.
	// Environment: AUDIT_WRITE_TIMEOUT.
	AttemptTimeout time.Duration

	// MaxBackoff is the longest wait between two attempts after a transient error; the wait
	// doubles from 100ms up to it, with jitter. Zero means 1s; the range is 10ms..5m.
	// Environment: AUDIT_MAX_BACKOFF.
	MaxBackoff time.Duration

	// TCPKeepAlive is how long a connection of the writer stays idle before TCP keepalive probes
	// are sent; probes follow at the same interval and the connection is dropped after 3
	// unanswered ones, so a peer that vanished is noticed within 4×TCPKeepAlive. Zero means 5s;
	// a negative value turns keepalives off; otherwise the range is 1s..2h. Not used for Unix
	// sockets. Environment: AUDIT_TCP_KEEPALIVE (a duration, or "off").
	TCPKeepAlive time.Duration

	// TCPUserTimeout is how long data the writer sent may stay unacknowledged before the kernel
	// drops the connection (Linux TCP_USER_TIMEOUT), so that a write into a silent network fails
	// instead of waiting for the kernel's retransmissions (about 15 minutes). Zero means 10s; a
	// negative value leaves the kernel's default; otherwise the range is 1s..1h. Ignored on other
	// systems and for Unix sockets. Environment: AUDIT_TCP_USER_TIMEOUT (a duration, or "off").
	TCPUserTimeout time.Duration

	// Spool configures the on-disk spool that keeps records while PostgreSQL cannot take them.
	// The zero value means no spool.
	Spool SpoolConfig

	// FailurePolicy says what happens to audited work whose record cannot be accepted: FailOpen
	// (the default) lets it proceed and counts the loss, FailClosed refuses it.
	// Environment: AUDIT_FAILURE_POLICY (open or closed).
	FailurePolicy FailurePolicy

	// SkipSchemaCheck makes Open return without checking that the schema, audit_logs and the
	// role's privileges are in place (see Open). Default false. Environment: AUDIT_SKIP_SCHEMA_CHECK.
	SkipSchemaCheck bool

	// Chain configures the per-tenant hash chain (docs/chain.md) and its signed checkpoints.
	// The zero value chains every record and signs nothing.
	Chain ChainConfig

	// Erasure stores personal values encrypted per data subject, so that a subject can be erased
	// without changing a record (docs/chain.md, "Erasure"). The zero value stores them as they are.
	Erasure ErasureConfig

	// Logger receives the library's warnings. Nil means slog.Default(). Not read from the environment.
	Logger *slog.Logger
}

// SpoolConfig configures the writer's on-disk spool: records that the queue cannot hold, or that
// PostgreSQL cannot take, are appended to files in Dir and written to the database once it answers.
type SpoolConfig struct {
	// Dir is the directory of the spool files, created when missing. Empty (the default) means no
	// spool. Each writer needs its own directory. Environment: AUDIT_SPOOL_DIR.
	Dir string

	// MaxBytes caps the spool's size on disk; when it is reached, a record waits in memory if the
	// queue has room and is otherwise refused under the FailurePolicy. Zero means 1 GiB; at least 1 MiB. Environment: AUDIT_SPOOL_MAX_BYTES, in
	// bytes or with a suffix: 512MiB, 1GiB, 500MB (KiB, MiB, GiB, TiB are powers of 1024; kB, MB,
	// GB, TB powers of 1000).
	MaxBytes int64

	// Sync says when spooled records are flushed to the disk (fsync), which matters only for a
	// crash of the machine: "batch" flushes continuously in the background, each flush covering
	// every record appended since the last (a crash loses at most the last few milliseconds),
	// "interval" every SyncInterval, "never" leaves it to the operating system. Empty means
	// "batch". See SpoolSync. Environment: AUDIT_SPOOL_SYNC (case-insensitive).
	Sync string

	// SyncInterval is the period of Sync "interval". Zero means 1s; the range is 1ms..1h.
	// Environment: AUDIT_SPOOL_SYNC_INTERVAL.
	SyncInterval time.Duration
}

// ChainConfig configures the per-tenant hash chain and the signed checkpoints that vouch for it.
type ChainConfig struct {
	// Disabled stores records outside every hash chain (no seq, prev_hash, row_hash), so that
	// nobody can prove later that they were not edited or removed. Default false: records are
	// chained. Environment: AUDIT_CHAIN (default true; false disables chaining).
	Disabled bool

	// SigningKey is the PEM text of an Ed25519 private key (a PKCS#8 "PRIVATE KEY" block, as
	// written by openssl genpkey -algorithm ed25519). With it, Open signs a checkpoint of every
	// chain that moved every CheckpointInterval (see Checkpointer). Empty means no checkpoints.
	// It is never logged: LogValue shows the key id only. Environment: AUDIT_SIGNING_KEY, either
	// the PEM text itself (literal "\n" sequences are accepted for line breaks) or the path of a
	// PEM file, whose content is stored here.
	SigningKey string

	// CheckpointInterval is the time between two rounds of checkpoints. Zero means 1m; the range
	// is 1s..24h. Environment: AUDIT_CHECKPOINT_INTERVAL.
	CheckpointInterval time.Duration

	// CheckpointWebhook, when set, receives every new checkpoint as a JSON POST, so that copies
	// are kept outside the database (see Checkpoint.MarshalJSON). It must be an https URL, or an
	// http URL on a loopback address; it needs SigningKey. Environment: AUDIT_CHECKPOINT_WEBHOOK.
	CheckpointWebhook string
}

// ErasureConfig configures erasure by crypto-shredding: the personal values of a record are stored
// encrypted with a key of their data subject, which EraseSubject destroys.
type ErasureConfig struct {
	// MasterKey is the base64 text of 32 random bytes (openssl rand -base64 32); it wraps every
	// subject key. Empty (the default) turns erasure off: values are stored as they are. It is
	// never logged. Environment: AUDIT_PII_MASTER_KEY, the base64 text or the path of a file
	// holding it.
	MasterKey string

	// PersonalFields are the top-level keys of before, after and diff whose values are personal
	// (email, phone, name ...), matched by exact lower-cased name; they belong to the subject
	// resource:<resource_type>:<resource_id>. The actor's email, address and user agent are
	// always personal, of the subject actor:<actor_id>. Needs MasterKey. Environment:
	// AUDIT_PII_FIELDS, comma-separated.
	PersonalFields []string
}

// PIICipher returns the cipher of Erasure, or nil and no error when no master key is configured.
func (c Config) PIICipher() (*PIICipher, error) {
	if c.Erasure.MasterKey == "" {
		return nil, nil
	}
	key, err := ParseMasterKey(c.Erasure.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("auditkit: %s: %w", fPIIMasterKey.name, err)
	}
	return NewPIICipher(key, c.Erasure.PersonalFields)
}

// JWTConfig configures bearer-token verification. At most one key source may be set: Secret,
// PublicKeyPEM or JWKSURL. With none (the zero value) no token is verified and the middleware
// establishes no actor from tokens.
type JWTConfig struct {
	// Secret is the HMAC key for HS256/HS384/HS512, at least 32 bytes (48 for HS384, 64 for
	// HS512): a shorter secret can be brute-forced offline from any token it signed.
	// Environment: AUDIT_JWT_SECRET (taken verbatim, surrounding spaces included).
	Secret string

	// PublicKeyPEM is the PEM text of an RSA (at least 2048 bits), ECDSA (P-256, P-384, P-521) or
	// Ed25519 public key: a PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE block.
	// Environment: AUDIT_JWT_PUBLIC_KEY, either the PEM text itself (literal "\n" sequences are
	// accepted for line breaks) or the path of a PEM file, whose content is stored here.
	PublicKeyPEM string

	// JWKSURL is the absolute http or https URL of a JSON Web Key Set; keys are fetched from it and
	// rotated by their kid. Use https outside local development: whoever can alter the response
	// can mint identities. Environment: AUDIT_JWT_JWKS_URL.
	JWKSURL string

	// Issuer, when set, must equal the token's iss claim. It is one issuer: a value with control
	// characters, or a URL followed by more text after a space or another URL, is an error.
	// Environment: AUDIT_JWT_ISSUER.
	Issuer string

	// Audience, when set, must contain one of the token's aud values. Nil means aud is not
	// checked. Environment: AUDIT_JWT_AUDIENCE (comma list).
	Audience []string

	// Claims names the claims that carry the actor and the tenant. Empty fields mean the defaults.
	// Environment: AUDIT_JWT_CLAIM_MAP (actor_id=uid,email=mail,...).
	Claims ClaimNames

	// Algorithms is the allow-list of JWS algorithms (HS256, HS384, HS512, RS256, RS384, RS512,
	// PS256, PS384, PS512, ES256, ES384, ES512, EdDSA); "none" is never accepted. Every entry must
	// suit the configured key, which rules out algorithm-confusion attacks. Nil means the
	// algorithms of that key: HS* the secret is long enough for, RS* and PS* for an RSA key, the
	// ES* of an ECDSA key's curve, EdDSA for Ed25519, every asymmetric algorithm for a JWKS URL.
	// Environment: AUDIT_JWT_ALGORITHMS (comma list, case-insensitive).
	Algorithms []string

	// Leeway is the clock skew tolerated when checking exp, nbf and iat. Zero means 30s; at most
	// 5m. (Zero cannot mean "no leeway": use a small value such as 1s.)
	// Environment: AUDIT_JWT_LEEWAY (Go duration syntax).
	Leeway time.Duration

	// UnsafeSkipVerification accepts tokens without checking their signature, so that any client
	// can claim any identity. It exists only for applications behind a gateway that has already
	// verified the token and rejects requests without one; it cannot be combined with a key.
	// Default false. Environment: AUDIT_JWT_UNSAFE_SKIP_VERIFICATION.
	UnsafeSkipVerification bool
}

// ClaimNames names the JWT claims that carry identity. An empty field means the default shown.
// Environment keys of AUDIT_JWT_CLAIM_MAP: actor_id, actor_type, email, tenant_id, tenant_slug.
type ClaimNames struct {
	ActorID    string // default "sub"
	ActorType  string // default "actor_type"
	Email      string // default "email"
	TenantID   string // default "tenant_id"
	TenantSlug string // default "tenant_slug"
}

// CaptureORMDiffs reports whether row changes made through GORM or ent are recorded.
func (c Config) CaptureORMDiffs() bool { return !c.DisableORMDiffs }

// AuditTarget returns the database URL and the schema (DefaultSchema when empty) that Open writes
// to, so that schema.CreateTablesFor(ctx, cfg) creates the tables where core.Open(ctx, cfg) writes.
func (c Config) AuditTarget() (databaseURL, schema string) {
	if c.Schema == "" {
		return c.DatabaseURL, DefaultSchema
	}
	return c.DatabaseURL, c.Schema
}

// Redactor returns the Redactor this configuration asks for: DefaultRedactFields merged with
// RedactFields, exempting the keys in RedactAllow.
func (c Config) Redactor() *Redactor { return NewRedactor(c.RedactFields, c.RedactAllow) }

// ExcludesPath reports whether requests to path are not audited, following the rules documented
// on ExcludePaths and DisableDefaultExcludePaths.
func (c Config) ExcludesPath(path string) bool {
	return !c.DisableDefaultExcludePaths && pathListed(DefaultExcludePaths, path) || pathListed(c.ExcludePaths, path)
}

// pathListed reports whether path matches an entry of list: exactly, or by prefix for an entry
// ending in "*".
func pathListed(list []string, path string) bool {
	for _, e := range list {
		if prefix, ok := strings.CutSuffix(e, "*"); ok {
			if strings.HasPrefix(path, prefix) {
				return true
			}
		} else if path == e {
			return true
		}
	}
	return false
}

// Enabled reports whether tokens are read at all: a key source is configured or verification is
// explicitly skipped.
func (j JWTConfig) Enabled() bool {
	return j.Secret != "" || j.PublicKeyPEM != "" || j.JWKSURL != "" || j.UnsafeSkipVerification
}

// PublicKey parses PublicKeyPEM. It returns nil and no error when PublicKeyPEM is empty.
func (j JWTConfig) PublicKey() (crypto.PublicKey, error) {
	if j.PublicKeyPEM == "" {
		return nil, nil
	}
	k, _, err := parsePublicKeyPEM(j.PublicKeyPEM)
	return k, err
}

// ChainSigningKey parses Chain.SigningKey. It returns nil and no error when no key is configured.
func (c Config) ChainSigningKey() (ed25519.PrivateKey, error) {
	if c.Chain.SigningKey == "" {
		return nil, nil
	}
	return ParseSigningKeyPEM(c.Chain.SigningKey)
}

// ChainPublicKey returns the public key of Chain.SigningKey, which verifies the checkpoints; nil
// and no error when no key is configured.
func (c Config) ChainPublicKey() (ed25519.PublicKey, error) {
	priv, err := c.ChainSigningKey()
	if priv == nil || err != nil {
		return nil, err
	}
	return priv.Public().(ed25519.PublicKey), nil
}

// ParseSigningKeyPEM parses the PEM text of an Ed25519 private key in a PKCS#8 "PRIVATE KEY"
// block, the form openssl genpkey -algorithm ed25519 writes.
func ParseSigningKeyPEM(text string) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode([]byte(strings.TrimSpace(text)))
	if block == nil {
		return nil, errors.New("no PEM block found (want -----BEGIN PRIVATE KEY-----)")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("the PEM block is %q; want an Ed25519 key in a PKCS#8 \"PRIVATE KEY\" block", block.Type)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the PKCS#8 key does not parse: %v", err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is %s; checkpoints are signed with Ed25519", keyTypeName(key))
	}
	return priv, nil
}

// keyTypeName names the type of a parsed private key for an error message.
func keyTypeName(key any) string {
	switch key.(type) {
	case *rsa.PrivateKey:
		return "an RSA key"
	case *ecdsa.PrivateKey:
		return "an ECDSA key"
	}
	return fmt.Sprintf("a %T", key)
}

// WithDefaults returns a copy of c in which every zero value that has a documented default holds
// that default; slices and maps are copied, so the result shares no memory with c. Values that are
// set, even invalid ones, are kept for Validate to report.
func (c Config) WithDefaults() Config {
	d := c
	d.RedactFields = slices.Clone(c.RedactFields)
	d.RedactAllow = slices.Clone(c.RedactAllow)
	d.ExcludePaths = slices.Clone(c.ExcludePaths)
	d.ActorTypeAliases = maps.Clone(c.ActorTypeAliases)
	d.TrustedProxies = slices.Clone(c.TrustedProxies)
	d.SkipMethods = slices.Clone(c.SkipMethods)
	d.JWT.Audience = slices.Clone(c.JWT.Audience)
	d.JWT.Algorithms = slices.Clone(c.JWT.Algorithms)

	if d.Schema == "" {
		d.Schema = DefaultSchema
	}
	d.ExcludePaths = mergeExcludePaths(c.ExcludePaths, c.DisableDefaultExcludePaths)
	if d.MaxBodySizeBytes == 0 {
		d.MaxBodySizeBytes = DefaultMaxBodySizeBytes
	}
	if d.BatchSize == 0 {
		d.BatchSize = DefaultBatchSize
	}
	if d.FlushInterval == 0 {
		d.FlushInterval = DefaultFlushInterval
	}
	if d.QueueSize == 0 {
		d.QueueSize = max(DefaultQueueSize, d.BatchSize)
	}
	if d.ConnectTimeout == 0 {
		d.ConnectTimeout = DefaultConnectTimeout
	}
	if d.AttemptTimeout == 0 {
		d.AttemptTimeout = DefaultAttemptTimeout
	}
	if d.MaxBackoff == 0 {
		d.MaxBackoff = DefaultMaxBackoff
	}
	if d.TCPKeepAlive == 0 {
		d.TCPKeepAlive = DefaultTCPKeepAlive
	}
	if d.TCPUserTimeout == 0 {
		d.TCPUserTimeout = DefaultTCPUserTimeout
	}
	if d.Spool.MaxBytes == 0 {
		d.Spool.MaxBytes = DefaultSpoolMaxBytes
	}
	if d.Spool.Sync == "" {
		d.Spool.Sync = DefaultSpoolSync
	}
	if d.Spool.SyncInterval == 0 {
		d.Spool.SyncInterval = DefaultSpoolSyncInterval
	}
	if d.Chain.CheckpointInterval == 0 {
		d.Chain.CheckpointInterval = DefaultCheckpointInterval
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	d.JWT.Claims = d.JWT.Claims.withDefaults()
	if d.JWT.Leeway == 0 {
		d.JWT.Leeway = DefaultJWTLeeway
	}
	if len(d.JWT.Algorithms) == 0 {
		if ks, err := d.JWT.keySource(); err == nil {
			d.JWT.Algorithms = ks.defaultAlgorithms()
		}
	}
	return d
}

// mergeExcludePaths returns the paths a configuration excludes: DefaultExcludePaths first (unless
// disabled), then the entries of list that are not already there, in order. It never returns
// memory shared with list or DefaultExcludePaths, and merging a merged list changes nothing.
func mergeExcludePaths(list []string, disableDefaults bool) []string {
	var out []string
	if !disableDefaults {
		out = slices.Clone(DefaultExcludePaths)
	} else if list != nil {
		out = make([]string, 0, len(list))
	}
	for _, e := range list {
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

func (n ClaimNames) withDefaults() ClaimNames {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&n.ActorID, "sub")
	def(&n.ActorType, "actor_type")
	def(&n.Email, "email")
	def(&n.TenantID, "tenant_id")
	def(&n.TenantSlug, "tenant_slug")
	return n
}

// Validate checks c as WithDefaults would complete it and returns every problem at once, joined
// with errors.Join; each wraps ErrConfig and names the field (JWT.Secret, BatchSize, ...).
// The zero Config is valid. Validate does not connect to anything.
func (c Config) Validate() error {
	p := &cfgProblems{}
	c.validate(p)
	return p.err()
}

// ConfigFromEnv reads the configuration from the process environment (os.Environ), reporting
// warnings to slog.Default(). See ConfigFromEnvironment.
func ConfigFromEnv() (Config, error) {
	return ConfigFromEnvironment(os.Environ(), nil)
}

// ConfigFromEnvironment reads the configuration from environ, a list of "KEY=value" entries as
// returned by os.Environ. Each field of Config names its variable. Values are trimmed; a variable
// that is empty counts as unset. Booleans accept true/false, 1/0, yes/no, on/off in any case; comma
// lists ignore spaces and empty items, but must name at least one item. An explicit 0 for a number or duration is an error, not a
// request for the default.
//
// The result has the defaults filled in (WithDefaults) and is validated: every malformed value is
// reported, each naming its variable, joined into one error that wraps ErrConfig; on error the
// returned Config is the zero value. An AUDIT_* variable that is not known (a typo, usually) is not
// an error, but is reported as a warning through logger, with the closest known name. logger nil
// means slog.Default(); it is also stored as the Config's Logger.
func ConfigFromEnvironment(environ []string, logger *slog.Logger) (Config, error) {
	c := Config{Logger: logger}
	if logger == nil {
		logger = slog.Default()
	}
	p := &cfgProblems{env: true}

	vals := make(map[string]string)
	unknown := make(map[string]bool)
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(strings.ToUpper(k), envPrefix) {
			continue
		}
		if !knownEnvVars[k] {
			unknown[k] = true
			continue
		}
		if prev, dup := vals[k]; dup {
			if prev != v {
				// os.Getenv returns the first one too.
				logger.Warn("audit: environment variable set twice; using the first value", "name", k)
			}
			continue
		}
		vals[k] = v
	}
	for _, k := range slices.Sorted(maps.Keys(unknown)) {
		if near := closestEnvVar(k); near != "" {
			logger.Warn("audit: unknown environment variable ignored", "name", k, "did_you_mean", near)
		} else {
			logger.Warn("audit: unknown environment variable ignored", "name", k)
		}
	}
	get := func(f cfgField) (string, bool) {
		v := strings.TrimSpace(vals[f.env])
		return v, v != ""
	}

	// Database.
	primary, hasPrimary := get(fDatabaseURL)
	alias, hasAlias := get(cfgField{env: envDatabaseURLAlias})
	switch {
	case hasPrimary && hasAlias && primary != alias:
		p.markBad(fDatabaseURL)
		p.errs = append(p.errs, &configError{
			name:    fDatabaseURL.env + " and " + envDatabaseURLAlias,
			problem: "both are set and differ; set only " + fDatabaseURL.env + " (" + envDatabaseURLAlias + " is an older alias)",
		})
	case hasPrimary:
		c.DatabaseURL = primary
	case hasAlias:
		c.DatabaseURL = alias
		p.rename(fDatabaseURL, envDatabaseURLAlias)
	}
	if v, ok := get(fSchema); ok {
		c.Schema = v
	}

	// Redaction and filtering.
	if v, ok := get(fRedactFields); ok {
		c.RedactFields = splitEnvList(p, fRedactFields, v)
	}
	if v, ok := get(fRedactAllow); ok {
		c.RedactAllow = splitEnvList(p, fRedactAllow, v)
	}
	if v, ok := get(fExcludePaths); ok {
		c.ExcludePaths = splitEnvList(p, fExcludePaths, v) // WithDefaults adds the defaults, as for the struct
	}
	excludeDefaults := true
	parseEnvBool(p, get, fExcludeDefaultPaths, &excludeDefaults)
	c.DisableDefaultExcludePaths = !excludeDefaults
	if v, ok := get(fActorTypeAliases); ok {
		c.ActorTypeAliases = make(map[string]ActorType)
		for _, kv := range parseEnvPairs(p, fActorTypeAliases, v) {
			k := kv[0] // verbatim: claim values are matched exactly
			if _, dup := c.ActorTypeAliases[k]; dup {
				p.addf(fActorTypeAliases, "alias %q is given twice", kv[0])
				continue
			}
			c.ActorTypeAliases[k] = ActorType(strings.ToLower(kv[1]))
		}
	}
	parseEnvBool(p, get, fCaptureRequestBody, &c.CaptureRequestBody)
	parseEnvBool(p, get, fCaptureResponseBody, &c.CaptureResponseBody)
	captureDiffs := true
	parseEnvBool(p, get, fCaptureORMDiffs, &captureDiffs)
	c.DisableORMDiffs = !captureDiffs
	parseEnvBool(p, get, fLogAnonymous, &c.LogAnonymous)
	parseEnvInt(p, get, fMaxBodySizeBytes, &c.MaxBodySizeBytes, 1, maxBodySizeLimit)

	// JWT.
	if v, ok := vals[fJWTSecret.env]; ok && strings.TrimSpace(v) != "" {
		c.JWT.Secret = v
	}
	if v, ok := get(fJWTPublicKey); ok {
		if strings.Contains(v, "-----BEGIN") {
			if !strings.Contains(v, "\n") {
				v = strings.ReplaceAll(v, `\n`, "\n")
			}
			c.JWT.PublicKeyPEM = v
		} else {
			text, err := readPEMFile(v)
			if err != nil {
				p.addErr(fJWTPublicKey, err, "is neither PEM text nor a readable file: %v", err)
			} else {
				c.JWT.PublicKeyPEM = text
				p.rename(fJWTPublicKey, fmt.Sprintf("%s (file %s)", fJWTPublicKey.env, v))
			}
		}
	}
	if v, ok := get(fJWTJWKSURL); ok {
		c.JWT.JWKSURL = v
	}
	if v, ok := get(fJWTIssuer); ok {
		c.JWT.Issuer = v
	}
	if v, ok := get(fJWTAudience); ok {
		c.JWT.Audience = splitEnvList(p, fJWTAudience, v)
	}
	if v, ok := get(fJWTClaims); ok {
		seen := make(map[string]bool)
		for _, kv := range parseEnvPairs(p, fJWTClaims, v) {
			key := strings.ToLower(kv[0])
			if seen[key] {
				p.addf(fJWTClaims, "key %q is given twice", kv[0])
				continue
			}
			seen[key] = true
			dst := c.JWT.Claims.field(key)
			if dst == nil {
				p.addf(fJWTClaims, "unknown key %q (want actor_id, actor_type, email, tenant_id or tenant_slug)", kv[0])
				continue
			}
			*dst = kv[1]
		}
	}
	if v, ok := get(fJWTAlgorithms); ok {
		for _, a := range splitEnvList(p, fJWTAlgorithms, v) {
			if canon, ok := canonicalJWTAlgorithm(a); ok {
				a = canon
			}
			if !slices.Contains(c.JWT.Algorithms, a) {
				c.JWT.Algorithms = append(c.JWT.Algorithms, a)
			}
		}
	}
	parseEnvDuration(p, get, fJWTLeeway, &c.JWT.Leeway, leewayProblem)
	parseEnvBool(p, get, fJWTSkipVerification, &c.JWT.UnsafeSkipVerification)

	// HTTP.
	if v, ok := get(fTrustedProxies); ok {
		c.TrustedProxies = splitEnvList(p, fTrustedProxies, v)
	}
	if v, ok := get(fTenantHeader); ok {
		c.TenantHeader = v
	}
	if v, ok := get(fSkipMethods); ok {
		for _, m := range splitEnvList(p, fSkipMethods, v) {
			m = strings.ToUpper(m)
			if !slices.Contains(c.SkipMethods, m) {
				c.SkipMethods = append(c.SkipMethods, m)
			}
		}
	}

	// Writer.
	parseEnvInt(p, get, fBatchSize, &c.BatchSize, 1, maxBatchSize)
	parseEnvDuration(p, get, fFlushInterval, &c.FlushInterval, flushIntervalProblem)
	parseEnvInt(p, get, fQueueSize, &c.QueueSize, 1, maxQueueSize)
	parseEnvDuration(p, get, fConnectTimeout, &c.ConnectTimeout, connectTimeoutProblem)
	parseEnvDuration(p, get, fAttemptTimeout, &c.AttemptTimeout, attemptTimeoutProblem)
	parseEnvDuration(p, get, fMaxBackoff, &c.MaxBackoff, maxBackoffProblem)
	parseEnvDurationOrOff(p, get, fTCPKeepAlive, &c.TCPKeepAlive, tcpKeepAliveProblem)
	parseEnvDurationOrOff(p, get, fTCPUserTimeout, &c.TCPUserTimeout, tcpUserTimeoutProblem)
	if v, ok := get(fFailurePolicy); ok {
		if fp, err := ParseFailurePolicy(v); err != nil {
			p.addf(fFailurePolicy, "%q is not a failure policy (want open or closed)", v)
		} else {
			c.FailurePolicy = fp
		}
	}
	parseEnvBool(p, get, fSkipSchemaCheck, &c.SkipSchemaCheck)

	// Spool.
	if v, ok := get(fSpoolDir); ok {
		c.Spool.Dir = v
	}
	if v, ok := get(fSpoolMaxBytes); ok {
		if n, err := parseByteSize(v); err != nil {
			p.addf(fSpoolMaxBytes, "%q %v", v, err)
		} else if n == 0 { // zero would silently mean the default
			p.addf(fSpoolMaxBytes, "%s", spoolMaxBytesProblem(0))
		} else {
			c.Spool.MaxBytes = n
		}
	}
	if v, ok := get(fSpoolSync); ok {
		c.Spool.Sync = strings.ToLower(v)
	}
	parseEnvDuration(p, get, fSpoolSyncInterval, &c.Spool.SyncInterval, spoolSyncIntervalProblem)

	// Chain.
	chained := true
	parseEnvBool(p, get, fChain, &chained)
	c.Chain.Disabled = !chained
	if v, ok := get(fSigningKey); ok {
		if strings.Contains(v, "-----BEGIN") {
			if !strings.Contains(v, "\n") {
				v = strings.ReplaceAll(v, `\n`, "\n")
			}
			c.Chain.SigningKey = v
		} else {
			text, err := readPEMFile(v)
			if err != nil {
				p.addErr(fSigningKey, err, "is neither PEM text nor a readable file: %v", err)
			} else {
				c.Chain.SigningKey = text
				p.rename(fSigningKey, fmt.Sprintf("%s (file %s)", fSigningKey.env, v))
			}
		}
	}
	parseEnvDuration(p, get, fCheckpointInterval, &c.Chain.CheckpointInterval, checkpointIntervalProblem)
	if v, ok := get(fCheckpointWebhook); ok {
		c.Chain.CheckpointWebhook = v
	}

	// Erasure.
	if v, ok := get(fPIIMasterKey); ok {
		if _, err := ParseMasterKey(v); err == nil {
			c.Erasure.MasterKey = v
		} else if text, ferr := readPEMFile(v); ferr == nil {
			c.Erasure.MasterKey = strings.TrimSpace(text)
			p.rename(fPIIMasterKey, fmt.Sprintf("%s (file %s)", fPIIMasterKey.env, v))
		} else {
			p.addf(fPIIMasterKey, "is neither a base64 key nor a readable file: %v", err)
			p.markBad(fPIIMasterKey)
		}
	}
	if v, ok := get(fPIIFields); ok {
		c.Erasure.PersonalFields = splitEnvList(p, fPIIFields, v)
	}

	c.validate(p)
	if err := p.err(); err != nil {
		return Config{}, err
	}
	if c.JWT.UnsafeSkipVerification {
		logger.Warn("audit: " + fJWTSkipVerification.env + " is on: JWT signatures are not verified, so any client can claim any identity unless a gateway in front verifies every token")
	}
	if !c.JWT.Enabled() {
		for _, f := range []cfgField{fJWTIssuer, fJWTAudience, fJWTClaims, fJWTAlgorithms, fJWTLeeway} {
			if _, ok := get(f); ok {
				logger.Warn("audit: JWT setting has no effect without a key", "name", f.env,
					"set_one_of", fJWTSecret.env+", "+fJWTPublicKey.env+", "+fJWTJWKSURL.env)
			}
		}
	}
	return c.WithDefaults(), nil
}

// LogValue implements slog.LogValuer. It leaves out the JWT secret and the database password, so
// a Config can be logged at startup.
func (c Config) LogValue() slog.Value {
	secret := ""
	if c.JWT.Secret != "" {
		secret = "REDACTED"
	}
	signingKey := ""
	if c.Chain.SigningKey != "" {
		signingKey = "invalid"
		if pub, err := c.ChainPublicKey(); err == nil {
			signingKey = "ed25519 " + KeyID(pub)
		}
	}
	publicKey := ""
	if c.JWT.PublicKeyPEM != "" {
		publicKey = "set"
		if ks, err := c.JWT.keySource(); err == nil {
			publicKey = ks.String()
		}
	}
	return slog.GroupValue(
		slog.String("database_url", redactDatabaseURL(c.DatabaseURL)),
		slog.String("schema", c.Schema),
		slog.Any("redact_fields", c.RedactFields),
		slog.Any("redact_allow", c.RedactAllow),
		slog.Any("exclude_paths", c.ExcludePaths),
		slog.Bool("exclude_default_paths", !c.DisableDefaultExcludePaths),
		slog.Any("actor_type_aliases", c.ActorTypeAliases),
		slog.Bool("capture_request_body", c.CaptureRequestBody),
		slog.Bool("capture_response_body", c.CaptureResponseBody),
		slog.Bool("capture_orm_diffs", c.CaptureORMDiffs()),
		slog.Bool("log_anonymous", c.LogAnonymous),
		slog.Int("max_body_size_bytes", c.MaxBodySizeBytes),
		slog.Group("jwt",
			slog.String("secret", secret),
			slog.String("public_key", publicKey),
			slog.String("jwks_url", c.JWT.JWKSURL),
			slog.String("issuer", c.JWT.Issuer),
			slog.Any("audience", c.JWT.Audience),
			slog.Any("claims", c.JWT.Claims),
			slog.Any("algorithms", c.JWT.Algorithms),
			slog.Duration("leeway", c.JWT.Leeway),
			slog.Bool("unsafe_skip_verification", c.JWT.UnsafeSkipVerification),
		),
		slog.Any("trusted_proxies", c.TrustedProxies),
		slog.String("tenant_header", c.TenantHeader),
		slog.Any("skip_methods", c.SkipMethods),
		slog.Int("batch_size", c.BatchSize),
		slog.Duration("flush_interval", c.FlushInterval),
		slog.Int("queue_size", c.QueueSize),
		slog.Duration("connect_timeout", c.ConnectTimeout),
		slog.Duration("attempt_timeout", c.AttemptTimeout),
		slog.Duration("max_backoff", c.MaxBackoff),
		slog.String("tcp_keepalive", durationOrOff(c.TCPKeepAlive)),
		slog.String("tcp_user_timeout", durationOrOff(c.TCPUserTimeout)),
		slog.Group("spool",
			slog.String("dir", c.Spool.Dir),
			slog.Int64("max_bytes", c.Spool.MaxBytes),
			slog.String("sync", c.Spool.Sync),
			slog.Duration("sync_interval", c.Spool.SyncInterval),
		),
		slog.String("failure_policy", c.FailurePolicy.String()),
		slog.Bool("skip_schema_check", c.SkipSchemaCheck),
		slog.Group("chain",
			slog.Bool("enabled", !c.Chain.Disabled),
			slog.String("signing_key", signingKey),
			slog.Duration("checkpoint_interval", c.Chain.CheckpointInterval),
			slog.String("checkpoint_webhook", redactWebhookURL(c.Chain.CheckpointWebhook)),
		),
		slog.Group("erasure",
			slog.Bool("master_key", c.Erasure.MasterKey != ""),
			slog.Any("personal_fields", c.Erasure.PersonalFields),
		),
	)
}

// redactWebhookURL shows a webhook URL without its password and query, either of which may hold
// a token.
func redactWebhookURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	return u.Redacted()
}

// validate checks c (completed with its defaults) and records the problems in p.
func (c Config) validate(p *cfgProblems) {
	d := c.WithDefaults()

	if d.DatabaseURL != "" && !p.bad[fDatabaseURL.name] {
		if msg := databaseURLProblem(d.DatabaseURL); msg != "" {
			p.addf(fDatabaseURL, "%s", msg)
		}
	}
	if msg := schemaProblem(d.Schema); msg != "" {
		p.addf(fSchema, "%s", msg)
	}

	for _, s := range d.RedactFields {
		if redactKeyIsEmpty(s) {
			p.addf(fRedactFields, "pattern %q has no letter or digit (keys are compared by their words of letters and digits), so it would match nothing", s)
		}
	}
	for _, s := range d.RedactAllow {
		if redactKeyIsEmpty(s) {
			p.addf(fRedactAllow, "key %q has no letter or digit (keys are compared by their words of letters and digits), so it would exempt nothing", s)
		}
	}
	for _, e := range d.ExcludePaths {
		if msg := excludePathProblem(e); msg != "" {
			p.addf(fExcludePaths, "%q %s", e, msg)
		}
	}
	seenAlias := make(map[string]string)
	for _, k := range slices.Sorted(maps.Keys(d.ActorTypeAliases)) {
		t := d.ActorTypeAliases[k]
		norm := strings.ToLower(strings.TrimSpace(k))
		switch {
		case norm == "":
			p.addf(fActorTypeAliases, "empty alias")
		case ActorType(norm).Valid():
			p.addf(fActorTypeAliases, "alias %q is a defined actor type and cannot be redefined", k)
		case seenAlias[norm] != "":
			p.addf(fActorTypeAliases, "aliases %q and %q differ only in case", seenAlias[norm], k)
		case !t.Valid():
			p.addf(fActorTypeAliases, "alias %q maps to %q, which is not an actor type (want platform_admin, tenant_user, service, system or anonymous)", k, t)
		}
		seenAlias[norm] = k
	}
	if d.MaxBodySizeBytes != 0 && !p.bad[fMaxBodySizeBytes.name] {
		if msg := intRangeProblem(d.MaxBodySizeBytes, 1, maxBodySizeLimit); msg != "" {
			p.addf(fMaxBodySizeBytes, "%s", msg)
		}
	}

	d.JWT.validate(p)

	for _, s := range d.TrustedProxies {
		if msg := trustedProxyProblem(s); msg != "" {
			p.addf(fTrustedProxies, "%q %s", s, msg)
		}
	}
	if d.TenantHeader != "" && !isHTTPToken(d.TenantHeader) {
		p.addf(fTenantHeader, "%q is not a valid header name", d.TenantHeader)
	}
	for _, m := range d.SkipMethods {
		switch {
		case !isHTTPToken(m):
			p.addf(fSkipMethods, "%q is not a valid HTTP method", m)
		case m != strings.ToUpper(m):
			p.addf(fSkipMethods, "%q is not upper case (methods are case-sensitive; did you mean %q?)", m, strings.ToUpper(m))
		}
	}

	batchOK := !p.bad[fBatchSize.name]
	if batchOK {
		if msg := intRangeProblem(d.BatchSize, 1, maxBatchSize); msg != "" {
			p.addf(fBatchSize, "%s", msg)
			batchOK = false
		}
	}
	if !p.bad[fFlushInterval.name] {
		if msg := flushIntervalProblem(d.FlushInterval); msg != "" {
			p.addf(fFlushInterval, "%s", msg)
		}
	}
	if !p.bad[fQueueSize.name] {
		if msg := intRangeProblem(d.QueueSize, 1, maxQueueSize); msg != "" {
			p.addf(fQueueSize, "%s", msg)
		} else if batchOK && d.QueueSize < d.BatchSize {
			p.addf(fQueueSize, "%d is smaller than %s (%d); the queue must hold at least one batch",
				d.QueueSize, p.name(fBatchSize), d.BatchSize)
		}
	}

	for _, c := range []struct {
		f       cfgField
		d       time.Duration
		problem func(time.Duration) string
	}{
		{fConnectTimeout, d.ConnectTimeout, connectTimeoutProblem},
		{fAttemptTimeout, d.AttemptTimeout, attemptTimeoutProblem},
		{fMaxBackoff, d.MaxBackoff, maxBackoffProblem},
		{fTCPKeepAlive, d.TCPKeepAlive, tcpKeepAliveProblem},
		{fTCPUserTimeout, d.TCPUserTimeout, tcpUserTimeoutProblem},
		{fSpoolSyncInterval, d.Spool.SyncInterval, spoolSyncIntervalProblem},
	} {
		if !p.bad[c.f.name] {
			if msg := c.problem(c.d); msg != "" {
				p.addf(c.f, "%s", msg)
			}
		}
	}
	if d.FailurePolicy != FailOpen && d.FailurePolicy != FailClosed {
		p.addf(fFailurePolicy, "%s is not a failure policy (want FailOpen or FailClosed)", d.FailurePolicy)
	}
	if !p.bad[fSpoolMaxBytes.name] {
		if msg := spoolMaxBytesProblem(d.Spool.MaxBytes); msg != "" {
			p.addf(fSpoolMaxBytes, "%s", msg)
		}
	}
	switch d.Spool.Sync {
	case "batch", "interval", "never":
	default:
		p.addf(fSpoolSync, "%q is not a sync mode (want batch, interval or never)", d.Spool.Sync)
	}

	if d.Chain.SigningKey != "" {
		if _, err := ParseSigningKeyPEM(d.Chain.SigningKey); err != nil {
			hint := ""
			if !p.env && !strings.Contains(d.Chain.SigningKey, "-----BEGIN") {
				hint = " (the field holds the PEM text itself, not a file path)"
			}
			p.addErr(fSigningKey, err, "%v%s", err, hint)
		}
	}
	if !p.bad[fCheckpointInterval.name] {
		if msg := checkpointIntervalProblem(d.Chain.CheckpointInterval); msg != "" {
			p.addf(fCheckpointInterval, "%s", msg)
		}
	}
	if d.Chain.CheckpointWebhook != "" {
		if msg := WebhookURLProblem(d.Chain.CheckpointWebhook); msg != "" {
			p.addf(fCheckpointWebhook, "%s", msg)
		} else if d.Chain.SigningKey == "" && !p.bad[fSigningKey.name] {
			p.addf(fCheckpointWebhook, "is set but %s is not: there are no checkpoints to send without a signing key", p.name(fSigningKey))
		}
	}
	if d.Erasure.MasterKey != "" && !p.bad[fPIIMasterKey.name] {
		if _, err := ParseMasterKey(d.Erasure.MasterKey); err != nil {
			p.addErr(fPIIMasterKey, err, "%v", err)
		}
	}
	if len(d.Erasure.PersonalFields) > 0 && d.Erasure.MasterKey == "" && !p.bad[fPIIMasterKey.name] {
		p.addf(fPIIFields, "is set but %s is not: personal fields are encrypted with keys the master key wraps", p.name(fPIIMasterKey))
	}
}

// WebhookURLProblem says what is wrong with a checkpoint webhook URL, or "" when nothing is: it
// must be an absolute https URL, or http on a loopback address (a local relay), because a
// checkpoint that can be altered or dropped on its way vouches for nothing.
func WebhookURLProblem(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Sprintf("%q is not an absolute http or https URL", redactWebhookURL(s))
	}
	if u.Scheme == "https" {
		return ""
	}
	host := u.Hostname()
	if host == "localhost" {
		return ""
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return ""
	}
	return fmt.Sprintf("%q uses http on a host that is not a loopback address; use https", redactWebhookURL(s))
}

func (j JWTConfig) validate(p *cfgProblems) {
	var sources []cfgField
	if j.Secret != "" {
		sources = append(sources, fJWTSecret)
	}
	if j.PublicKeyPEM != "" || p.bad[fJWTPublicKey.name] {
		sources = append(sources, fJWTPublicKey)
	}
	if j.JWKSURL != "" {
		sources = append(sources, fJWTJWKSURL)
	}
	names := make([]string, len(sources))
	for i, f := range sources {
		names[i] = p.name(f)
	}
	keyOK := true
	switch {
	case len(sources) > 1:
		verb := "is"
		if len(names) > 2 {
			verb = "are"
		}
		p.addf(sources[0], "only one key source may be set, and %s %s set too", strings.Join(names[1:], " and "), verb)
		keyOK = false
	case len(sources) == 1 && j.UnsafeSkipVerification:
		p.addf(fJWTSkipVerification, "cannot be combined with %s: either verify tokens or skip verification", names[0])
		keyOK = false
	}

	if j.Secret != "" && len(j.Secret) < minHMACSecret {
		p.addf(fJWTSecret, "the secret is %d bytes; at least %d are required, because a shorter HMAC secret can be recovered by brute force from any token it signed (RFC 7518 section 3.2)", len(j.Secret), minHMACSecret)
		keyOK = false
	}
	if j.PublicKeyPEM != "" {
		if _, _, err := parsePublicKeyPEM(j.PublicKeyPEM); err != nil {
			hint := ""
			if !p.env && !strings.Contains(j.PublicKeyPEM, "-----BEGIN") {
				hint = " (the field holds the PEM text itself, not a file path)"
			}
			p.addErr(fJWTPublicKey, err, "%v%s", err, hint)
			keyOK = false
		}
	}
	if p.bad[fJWTPublicKey.name] {
		keyOK = false
	}
	if j.JWKSURL != "" {
		u, err := url.Parse(j.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.addf(fJWTJWKSURL, "%q is not an absolute http or https URL", j.JWKSURL)
			keyOK = false
		}
	}

	if problem := issuerProblem(j.Issuer); problem != "" {
		p.addf(fJWTIssuer, "%q %s", j.Issuer, problem)
	}
	for _, a := range j.Audience {
		if strings.TrimSpace(a) == "" {
			p.addf(fJWTAudience, "empty audience")
		}
	}
	for _, c := range []struct{ key, v string }{
		{"actor_id", j.Claims.ActorID}, {"actor_type", j.Claims.ActorType}, {"email", j.Claims.Email},
		{"tenant_id", j.Claims.TenantID}, {"tenant_slug", j.Claims.TenantSlug},
	} {
		if c.v != strings.TrimSpace(c.v) || strings.ContainsAny(c.v, " \t\r\n") {
			p.addf(fJWTClaims, "%s: claim name %q contains spaces", c.key, c.v)
		}
	}

	var ks jwtKeySource
	if keyOK {
		// Errors were reported above; a key source that fails to parse has no algorithms to check against.
		ks, _ = j.keySource()
	}
	for _, a := range j.Algorithms {
		if strings.EqualFold(a, "none") {
			p.addf(fJWTAlgorithms, `"none" means an unsigned token and is never accepted (%s exists for tokens verified by a gateway)`, p.name(fJWTSkipVerification))
			continue
		}
		if !slices.Contains(jwtAlgorithms, a) {
			if canon, ok := canonicalJWTAlgorithm(a); ok {
				p.addf(fJWTAlgorithms, "unknown algorithm %q (algorithm names are case-sensitive; did you mean %q?)", a, canon)
			} else {
				p.addf(fJWTAlgorithms, "unknown algorithm %q (want one of %s)", a, strings.Join(jwtAlgorithms, ", "))
			}
			continue
		}
		if !keyOK || ks.kind == keyNone || ks.kind == keySkip {
			continue
		}
		if !slices.Contains(ks.allowedAlgorithms(), a) {
			if ks.kind == keyHMAC && strings.HasPrefix(a, "HS") {
				p.addf(fJWTAlgorithms, "%s needs a secret of at least %d bytes (RFC 7518 section 3.2); %s has %d", a, hmacMinBytes(a), p.name(fJWTSecret), len(j.Secret))
			} else {
				p.addf(fJWTAlgorithms, "%s cannot be used with %s (allowed: %s); accepting it would open the door to algorithm-confusion attacks", a, ks, strings.Join(ks.allowedAlgorithms(), ", "))
			}
		}
	}

	if j.Leeway != 0 && !p.bad[fJWTLeeway.name] {
		if msg := leewayProblem(j.Leeway); msg != "" {
			p.addf(fJWTLeeway, "%s", msg)
		}
	}
}

// field returns the ClaimNames field for an AUDIT_JWT_CLAIM_MAP key, or nil.
func (n *ClaimNames) field(key string) *string {
	switch key {
	case "actor_id":
		return &n.ActorID
	case "actor_type":
		return &n.ActorType
	case "email":
		return &n.Email
	case "tenant_id":
		return &n.TenantID
	case "tenant_slug":
		return &n.TenantSlug
	}
	return nil
}

// The environment and its fields.

const (
	envPrefix           = "AUDIT_"
	envDatabaseURLAlias = "AUDIT_CONTROL_DB_URL"
)

// cfgField names a setting both ways: by Config field (for Validate) and by environment variable.
type cfgField struct{ name, env string }

var (
	fDatabaseURL         = cfgField{"DatabaseURL", "AUDIT_DATABASE_URL"}
	fSchema              = cfgField{"Schema", "AUDIT_DB_SCHEMA"}
	fRedactFields        = cfgField{"RedactFields", "AUDIT_REDACT_FIELDS"}
	fRedactAllow         = cfgField{"RedactAllow", "AUDIT_REDACT_ALLOW"}
	fExcludePaths        = cfgField{"ExcludePaths", "AUDIT_EXCLUDE_PATHS"}
	fExcludeDefaultPaths = cfgField{"DisableDefaultExcludePaths", "AUDIT_EXCLUDE_DEFAULT_PATHS"}
	fActorTypeAliases    = cfgField{"ActorTypeAliases", "AUDIT_ACTOR_TYPE_ALIASES"}
	fCaptureRequestBody  = cfgField{"CaptureRequestBody", "AUDIT_CAPTURE_REQUEST_BODY"}
	fCaptureResponseBody = cfgField{"CaptureResponseBody", "AUDIT_CAPTURE_RESPONSE_BODY"}
	fCaptureORMDiffs     = cfgField{"DisableORMDiffs", "AUDIT_CAPTURE_ORM_DIFFS"}
	fLogAnonymous        = cfgField{"LogAnonymous", "AUDIT_LOG_ANONYMOUS"}
	fMaxBodySizeBytes    = cfgField{"MaxBodySizeBytes", "AUDIT_MAX_BODY_SIZE_BYTES"}
	fJWTSecret           = cfgField{"JWT.Secret", "AUDIT_JWT_SECRET"}
	fJWTPublicKey        = cfgField{"JWT.PublicKeyPEM", "AUDIT_JWT_PUBLIC_KEY"}
	fJWTJWKSURL          = cfgField{"JWT.JWKSURL", "AUDIT_JWT_JWKS_URL"}
	fJWTIssuer           = cfgField{"JWT.Issuer", "AUDIT_JWT_ISSUER"}
	fJWTAudience         = cfgField{"JWT.Audience", "AUDIT_JWT_AUDIENCE"}
	fJWTClaims           = cfgField{"JWT.Claims", "AUDIT_JWT_CLAIM_MAP"}
	fJWTAlgorithms       = cfgField{"JWT.Algorithms", "AUDIT_JWT_ALGORITHMS"}
	fJWTLeeway           = cfgField{"JWT.Leeway", "AUDIT_JWT_LEEWAY"}
	fJWTSkipVerification = cfgField{"JWT.UnsafeSkipVerification", "AUDIT_JWT_UNSAFE_SKIP_VERIFICATION"}
	fTrustedProxies      = cfgField{"TrustedProxies", "AUDIT_TRUSTED_PROXIES"}
	fTenantHeader        = cfgField{"TenantHeader", "AUDIT_TENANT_HEADER"}
	fSkipMethods         = cfgField{"SkipMethods", "AUDIT_SKIP_METHODS"}
	fBatchSize           = cfgField{"BatchSize", "AUDIT_BATCH_SIZE"}
	fFlushInterval       = cfgField{"FlushInterval", "AUDIT_FLUSH_INTERVAL"}
	fQueueSize           = cfgField{"QueueSize", "AUDIT_QUEUE_SIZE"}
	fConnectTimeout      = cfgField{"ConnectTimeout", "AUDIT_CONNECT_TIMEOUT"}
	fAttemptTimeout      = cfgField{"AttemptTimeout", "AUDIT_WRITE_TIMEOUT"}
	fMaxBackoff          = cfgField{"MaxBackoff", "AUDIT_MAX_BACKOFF"}
	fTCPKeepAlive        = cfgField{"TCPKeepAlive", "AUDIT_TCP_KEEPALIVE"}
	fTCPUserTimeout      = cfgField{"TCPUserTimeout", "AUDIT_TCP_USER_TIMEOUT"}
	fSpoolDir            = cfgField{"Spool.Dir", "AUDIT_SPOOL_DIR"}
	fSpoolMaxBytes       = cfgField{"Spool.MaxBytes", "AUDIT_SPOOL_MAX_BYTES"}
	fSpoolSync           = cfgField{"Spool.Sync", "AUDIT_SPOOL_SYNC"}
	fSpoolSyncInterval   = cfgField{"Spool.SyncInterval", "AUDIT_SPOOL_SYNC_INTERVAL"}
	fFailurePolicy       = cfgField{"FailurePolicy", "AUDIT_FAILURE_POLICY"}
	fSkipSchemaCheck     = cfgField{"SkipSchemaCheck", "AUDIT_SKIP_SCHEMA_CHECK"}
	fChain               = cfgField{"Chain.Disabled", "AUDIT_CHAIN"}
	fSigningKey          = cfgField{"Chain.SigningKey", "AUDIT_SIGNING_KEY"}
	fCheckpointInterval  = cfgField{"Chain.CheckpointInterval", "AUDIT_CHECKPOINT_INTERVAL"}
	fCheckpointWebhook   = cfgField{"Chain.CheckpointWebhook", "AUDIT_CHECKPOINT_WEBHOOK"}
	fPIIMasterKey        = cfgField{"Erasure.MasterKey", "AUDIT_PII_MASTER_KEY"}
	fPIIFields           = cfgField{"Erasure.PersonalFields", "AUDIT_PII_FIELDS"}
)

var knownEnvVars = func() map[string]bool {
	m := map[string]bool{envDatabaseURLAlias: true}
	for _, f := range []cfgField{
		fDatabaseURL, fSchema, fRedactFields, fRedactAllow, fExcludePaths, fExcludeDefaultPaths, fActorTypeAliases,
		fCaptureRequestBody, fCaptureResponseBody, fCaptureORMDiffs, fLogAnonymous, fMaxBodySizeBytes,
		fJWTSecret, fJWTPublicKey, fJWTJWKSURL, fJWTIssuer, fJWTAudience, fJWTClaims, fJWTAlgorithms,
		fJWTLeeway, fJWTSkipVerification, fTrustedProxies, fTenantHeader, fSkipMethods, fBatchSize,
		fFlushInterval, fQueueSize, fConnectTimeout, fAttemptTimeout, fMaxBackoff, fTCPKeepAlive,
		fTCPUserTimeout, fSpoolDir, fSpoolMaxBytes, fSpoolSync, fSpoolSyncInterval, fFailurePolicy,
		fSkipSchemaCheck, fChain, fSigningKey, fCheckpointInterval, fCheckpointWebhook,
		fPIIMasterKey, fPIIFields,
	} {
		m[f.env] = true
	}
	return m
}()

// closestEnvVar returns the known variable within edit distance 2 of name (ignoring case), or "".
func closestEnvVar(name string) string {
	upper := strings.ToUpper(name)
	best, bestDist := "", 3
	for _, k := range slices.Sorted(maps.Keys(knownEnvVars)) {
		if d := envEditDistance(upper, k, bestDist); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// envEditDistance is the Levenshtein distance of a and b, or limit when it is at least limit.
func envEditDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= limit {
			return limit
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}

// Problems.

// configError is one configuration problem. It matches ErrConfig with errors.Is.
type configError struct {
	name    string // the environment variable or Config field
	problem string
	cause   error
}

func (e *configError) Error() string        { return e.name + ": " + e.problem }
func (e *configError) Is(target error) bool { return target == ErrConfig }
func (e *configError) Unwrap() error        { return e.cause }

// cfgProblems collects configuration problems, naming them by environment variable or by field.
type cfgProblems struct {
	env   bool
	names map[string]string // field name -> how to call it instead (the alias variable, a file)
	bad   map[string]bool   // fields with a problem already; checks that depend on them are skipped
	errs  []error
}

func (p *cfgProblems) name(f cfgField) string {
	if n, ok := p.names[f.name]; ok {
		return n
	}
	if p.env && f.env != "" {
		return f.env
	}
	return f.name
}

func (p *cfgProblems) rename(f cfgField, name string) {
	if p.names == nil {
		p.names = make(map[string]string)
	}
	p.names[f.name] = name
}

func (p *cfgProblems) addf(f cfgField, format string, args ...any) {
	p.addErr(f, nil, format, args...)
}

func (p *cfgProblems) markBad(f cfgField) {
	if p.bad == nil {
		p.bad = make(map[string]bool)
	}
	p.bad[f.name] = true
}

func (p *cfgProblems) addErr(f cfgField, cause error, format string, args ...any) {
	p.markBad(f)
	p.errs = append(p.errs, &configError{name: p.name(f), problem: fmt.Sprintf(format, args...), cause: cause})
}

func (p *cfgProblems) err() error { return errors.Join(p.errs...) }

// issuerProblem says what is wrong with an issuer, or "" when nothing is. The issuer must equal
// the token's iss claim exactly, so a value no issuer would have (control characters, only white
// space, several URLs where one is accepted) is a configuration mistake that would refuse every
// token.
func issuerProblem(iss string) string {
	switch {
	case iss == "":
		return ""
	case strings.IndexFunc(iss, unicode.IsControl) >= 0:
		return "contains a control character"
	case strings.TrimSpace(iss) == "":
		return "is only white space"
	case strings.Contains(iss, "://") && (strings.Count(iss, "://") > 1 || strings.ContainsRune(iss, ' ')):
		return "is not a single URL; only one issuer can be configured, and it must equal the token's iss claim"
	}
	return ""
}

// Parsing environment values.

// splitEnvList splits a comma list, trimming items and dropping empty ones. A value that is set
// but names no item (" , ") is reported: it would otherwise read as unset, which for some variables
// (AUDIT_JWT_AUDIENCE) turns a check off.
func splitEnvList(p *cfgProblems, f cfgField, s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	if out == nil && strings.TrimSpace(s) != "" {
		p.addf(f, "%q lists no item; give at least one, or unset the variable", s)
	}
	return out
}

// parseEnvPairs parses a comma list of key=value items; malformed items are reported and skipped.
func parseEnvPairs(p *cfgProblems, f cfgField, s string) [][2]string {
	var out [][2]string
	for _, item := range splitEnvList(p, f, s) {
		k, v, ok := strings.Cut(item, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok:
			p.addf(f, "item %q is not key=value", item)
		case k == "":
			p.addf(f, "item %q has an empty key", item)
		case v == "":
			p.addf(f, "item %q has an empty value", item)
		default:
			out = append(out, [2]string{k, v})
		}
	}
	return out
}

type envGetter func(cfgField) (string, bool)

func parseEnvBool(p *cfgProblems, get envGetter, f cfgField, dst *bool) {
	v, ok := get(f)
	if !ok {
		return
	}
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on":
		*dst = true
	case "false", "0", "no", "off":
		*dst = false
	default:
		p.addf(f, "%q is not a boolean (want true/false, 1/0, yes/no or on/off)", v)
	}
}

func parseEnvInt(p *cfgProblems, get envGetter, f cfgField, dst *int, lo, hi int) {
	v, ok := get(f)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			p.addf(f, "%q is out of range %d..%d", v, lo, hi)
		} else {
			p.addf(f, "%q is not a whole number", v)
		}
		return
	}
	if n == 0 { // zero would silently mean the default
		p.addf(f, "%s", intRangeProblem(n, lo, hi))
		return
	}
	*dst = n
}

func parseEnvDuration(p *cfgProblems, get envGetter, f cfgField, dst *time.Duration, problem func(time.Duration) string) {
	v, ok := get(f)
	if !ok {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.addf(f, "%q is not a duration (use Go syntax such as 500ms, 30s or 2m)", v)
		return
	}
	if d == 0 { // zero would silently mean the default
		p.addf(f, "%s", problem(0))
		return
	}
	*dst = d
}

// parseEnvDurationOrOff is parseEnvDuration for settings that "off" turns off, stored as -1.
func parseEnvDurationOrOff(p *cfgProblems, get envGetter, f cfgField, dst *time.Duration, problem func(time.Duration) string) {
	if v, ok := get(f); ok && strings.EqualFold(v, "off") {
		*dst = -1
		return
	}
	parseEnvDuration(p, get, f, dst, problem)
}

var byteSizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// parseByteSize parses a whole number of bytes with an optional unit (512MiB, 1GiB, 500MB).
func parseByteSize(s string) (int64, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(s)
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	mult, ok := byteSizeUnits[unit]
	if num == "" || !ok {
		return 0, errors.New("is not a size (use bytes, or a whole number with KiB, MiB, GiB, TiB, kB, MB, GB or TB)")
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > (1<<63-1)/mult {
		return 0, errors.New("is too large")
	}
	return n * mult, nil
}

// durationOrOff shows a duration that a negative value turns off.
func durationOrOff(d time.Duration) string {
	if d < 0 {
		return "off"
	}
	return d.String()
}

// readPEMFile reads a PEM file of at most maxPEMFileSize bytes.
func readPEMFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFileSize+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxPEMFileSize {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxPEMFileSize)
	}
	return string(b), nil
}

// Checks shared by Validate and the environment.

func intRangeProblem(n, lo, hi int) string {
	if n < lo || n > hi {
		return fmt.Sprintf("%d is out of range %d..%d", n, lo, hi)
	}
	return ""
}

func flushIntervalProblem(d time.Duration) string {
	if d < minFlushInterval {
		return fmt.Sprintf("%s is shorter than %s", d, minFlushInterval)
	}
	return ""
}

// durationRange returns a check that d lies in lo..hi.
func durationRange(lo, hi time.Duration) func(time.Duration) string {
	return func(d time.Duration) string {
		if d < lo || d > hi {
			return fmt.Sprintf("%s is out of range %s..%s", d, lo, hi)
		}
		return ""
	}
}

// durationRangeOrOff is durationRange for settings that a negative value turns off.
func durationRangeOrOff(lo, hi time.Duration) func(time.Duration) string {
	in := durationRange(lo, hi)
	return func(d time.Duration) string {
		if d < 0 {
			return ""
		}
		if msg := in(d); msg != "" {
			return msg + ` (or "off")`
		}
		return ""
	}
}

var (
	connectTimeoutProblem     = durationRange(minConnectTimeout, maxConnectTimeout)
	attemptTimeoutProblem     = durationRange(minAttemptTimeout, maxAttemptTimeout)
	maxBackoffProblem         = durationRange(minMaxBackoff, maxMaxBackoff)
	tcpKeepAliveProblem       = durationRangeOrOff(minTCPKeepAlive, maxTCPKeepAlive)
	tcpUserTimeoutProblem     = durationRangeOrOff(minTCPUserTimeout, maxTCPUserTimeout)
	spoolSyncIntervalProblem  = durationRange(minSpoolSyncInterval, maxSpoolSyncInterval)
	checkpointIntervalProblem = durationRange(minCheckpointInterval, maxCheckpointInterval)
)

func spoolMaxBytesProblem(n int64) string {
	if n < minSpoolMaxBytes {
		return fmt.Sprintf("%d bytes is less than the minimum of 1 MiB (%d)", n, int64(minSpoolMaxBytes))
	}
	return ""
}

func leewayProblem(d time.Duration) string {
	switch {
	case d < 0:
		return fmt.Sprintf("%s is negative", d)
	case d == 0:
		return fmt.Sprintf("0s would mean the default (%s); give a positive duration up to %s", DefaultJWTLeeway, maxJWTLeeway)
	case d > maxJWTLeeway:
		return fmt.Sprintf("%s is longer than %s; a large leeway keeps expired tokens valid", d, maxJWTLeeway)
	}
	return ""
}

var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

func schemaProblem(s string) string {
	switch {
	case len(s) > 63:
		return fmt.Sprintf("%q is longer than 63 bytes, PostgreSQL's identifier limit", s)
	case strings.HasPrefix(s, "pg_"):
		return fmt.Sprintf("%q: names beginning with pg_ are reserved by PostgreSQL", s)
	case schemaPattern.MatchString(s):
		return ""
	case schemaPattern.MatchString(strings.ToLower(s)):
		return fmt.Sprintf("%q is not lower case; PostgreSQL folds unquoted names to lower case, so a mixed-case schema would differ depending on quoting (use %q)", s, strings.ToLower(s))
	}
	return fmt.Sprintf("%q is not a plain identifier (letters, digits and underscore, not starting with a digit)", s)
}

// databaseURLProblem parses s as pgx would, without connecting. The connection string is never
// repeated in the message, because it may hold a password.
func databaseURLProblem(s string) string {
	if scheme, _, ok := strings.Cut(s, "://"); ok && !strings.ContainsAny(scheme, " =") &&
		scheme != "postgres" && scheme != "postgresql" {
		return fmt.Sprintf("scheme %q is not postgres:// or postgresql://", scheme)
	}
	_, err := pgconn.ParseConfig(s)
	if err == nil {
		return ""
	}
	const what = "is not a valid PostgreSQL URL or key=value connection string"
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return what
	}
	if inner := pe.Unwrap(); inner != nil {
		return what + ": " + inner.Error()
	}
	// Without an inner error the message is "cannot parse `<redacted>`: <reason>"; keep the reason.
	msg := pe.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 {
		return what + ": " + msg[i+3:]
	}
	return what
}

var (
	dsnPasswordPattern = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)`)
	urlPasswordPattern = regexp.MustCompile(`(?i)([?&]password=)[^&]*`)
)

// redactDatabaseURL hides the password of a URL or key=value connection string.
func redactDatabaseURL(s string) string {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		if u, err := url.Parse(s); err == nil {
			s = u.Redacted()
		} else {
			return "REDACTED (unparsable)"
		}
		return urlPasswordPattern.ReplaceAllString(s, "${1}xxxxx")
	}
	return dsnPasswordPattern.ReplaceAllString(s, "${1}xxxxx")
}

// redactKeyIsEmpty reports whether key consists only of what redaction ignores when it compares
// keys: '-', '_', '.', white space and control characters.
// redactKeyIsEmpty reports whether key has no letter or digit: keys and patterns are compared by
// their words of letters and digits (see Redactor.Sensitive), so such a key has no word.
func redactKeyIsEmpty(key string) bool {
	return strings.IndexFunc(key, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) < 0
}

func excludePathProblem(e string) string {
	switch {
	case !strings.HasPrefix(e, "/"):
		return `does not start with "/"`
	case strings.Contains(strings.TrimSuffix(e, "*"), "*"):
		return `has "*" before the end; "*" is allowed only as the last character, meaning a prefix`
	case strings.ContainsAny(e, "?# \t\r\n"):
		return "contains a space, '?' or '#'; paths are matched without the query string"
	}
	return ""
}

func trustedProxyProblem(s string) string {
	var addr netip.Addr
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return "is not a valid CIDR prefix"
		}
		addr = pfx.Addr()
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return "is not a valid IP address or CIDR prefix"
		}
		addr = a
	}
	if addr.Zone() != "" {
		return "has an IPv6 zone, which proxy matching does not support"
	}
	return ""
}

// isHTTPToken reports whether s is an RFC 9110 token (method names, header names).
func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// JWT keys and algorithms.

var jwtAlgorithms = []string{
	"HS256", "HS384", "HS512",
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// canonicalJWTAlgorithm returns the registered spelling of a, matched ignoring case.
func canonicalJWTAlgorithm(a string) (string, bool) {
	for _, k := range jwtAlgorithms {
		if strings.EqualFold(k, a) {
			return k, true
		}
	}
	return "", false
}

func hmacMinBytes(alg string) int {
	switch alg {
	case "HS384":
		return 48
	case "HS512":
		return 64
	}
	return 32
}

type jwtKeyKind int

const (
	keyNone jwtKeyKind = iota
	keySkip
	keyHMAC
	keyRSA
	keyECDSA
	keyEd25519
	keyJWKS
)

// jwtKeySource is the kind of key a JWTConfig verifies with.
type jwtKeySource struct {
	kind      jwtKeyKind
	secretLen int
	curve     string // ECDSA: P-256, P-384 or P-521
	bits      int    // RSA
}

func (k jwtKeySource) String() string {
	switch k.kind {
	case keyHMAC:
		return "an HMAC secret"
	case keyRSA:
		return fmt.Sprintf("an RSA-%d public key", k.bits)
	case keyECDSA:
		return "an ECDSA " + k.curve + " public key"
	case keyEd25519:
		return "an Ed25519 public key"
	case keyJWKS:
		return "a JWKS URL"
	case keySkip:
		return "skipped verification"
	}
	return "no key"
}

// keySource classifies the configured key. With more than one source it reports the first.
func (j JWTConfig) keySource() (jwtKeySource, error) {
	switch {
	case j.Secret != "":
		return jwtKeySource{kind: keyHMAC, secretLen: len(j.Secret)}, nil
	case j.PublicKeyPEM != "":
		_, ks, err := parsePublicKeyPEM(j.PublicKeyPEM)
		return ks, err
	case j.JWKSURL != "":
		return jwtKeySource{kind: keyJWKS}, nil
	case j.UnsafeSkipVerification:
		return jwtKeySource{kind: keySkip}, nil
	}
	return jwtKeySource{kind: keyNone}, nil
}

// allowedAlgorithms lists the algorithms that suit the key.
func (k jwtKeySource) allowedAlgorithms() []string {
	switch k.kind {
	case keyHMAC:
		var out []string
		for _, a := range []string{"HS256", "HS384", "HS512"} {
			if k.secretLen >= hmacMinBytes(a) {
				out = append(out, a)
			}
		}
		return out
	case keyRSA:
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case keyECDSA:
		return []string{map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[k.curve]}
	case keyEd25519:
		return []string{"EdDSA"}
	case keyJWKS:
		return slices.DeleteFunc(slices.Clone(jwtAlgorithms), func(a string) bool { return strings.HasPrefix(a, "HS") })
	case keySkip:
		return slices.Clone(jwtAlgorithms)
	}
	return nil
}

func (k jwtKeySource) defaultAlgorithms() []string { return k.allowedAlgorithms() }

// parsePublicKeyPEM parses one PEM block holding an RSA, ECDSA or Ed25519 public key.
func parsePublicKeyPEM(text string) (crypto.PublicKey, jwtKeySource, error) {
	var none jwtKeySource
	block, rest := pem.Decode([]byte(text))
	if block == nil {
		return nil, none, errors.New("no PEM block found")
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, none, errors.New("more than one PEM block; give exactly one key (a JWKS URL serves several)")
	}
	var key any
	var err error
	switch {
	case block.Type == "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case block.Type == "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case block.Type == "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	case strings.Contains(block.Type, "PRIVATE KEY"):
		return nil, none, fmt.Errorf("the PEM block is a %s; give the public key only, a verifier must not hold the signing key", block.Type)
	default:
		return nil, none, fmt.Errorf("unsupported PEM block %q (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", block.Type)
	}
	if err != nil {
		return nil, none, fmt.Errorf("cannot parse the %s block: %w", block.Type, err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return nil, none, fmt.Errorf("the RSA key has %d bits; at least %d are required", bits, minRSABits)
		}
		return k, jwtKeySource{kind: keyRSA, bits: k.N.BitLen()}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, jwtKeySource{kind: keyECDSA, curve: k.Curve.Params().Name}, nil
		}
		return nil, none, errors.New("the ECDSA key is not on P-256, P-384 or P-521")
	case ed25519.PublicKey:
		return k, jwtKeySource{kind: keyEd25519}, nil
	}
	return nil, none, fmt.Errorf("unsupported key type %T (want RSA, ECDSA or Ed25519)", key)
}
