package core_test

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/auditkit/auditkit/core"
)

// Applications call core.ConfigFromEnv(); ConfigFromEnvironment takes the variables explicitly.
func ExampleConfigFromEnvironment() {
	environ := []string{
		"AUDIT_DATABASE_URL=postgres://audit@localhost:5432/app",
		"AUDIT_EXCLUDE_PATHS=/internal/*, /ping",
		"AUDIT_ACTOR_TYPE_ALIASES=ops_admin=platform_admin,bot=service",
		"AUDIT_SKIP_METHODS=options,head",
		"AUDIT_FLUSH_INTERVAL=250ms",
		"AUDIT_BACH_SIZE=200", // a typo: reported as a warning, not an error
	}
	// A logger without timestamps keeps the output stable.
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))

	cfg, err := core.ConfigFromEnvironment(environ, logger)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("schema:", cfg.Schema)
	fmt.Println("exclude:", cfg.ExcludePaths)
	fmt.Println("/internal/jobs excluded:", cfg.ExcludesPath("/internal/jobs"))
	fmt.Println("bot is:", cfg.ActorTypeAliases["bot"])
	fmt.Println("skip:", cfg.SkipMethods)
	fmt.Println("batch:", cfg.BatchSize, "every", cfg.FlushInterval, "queue:", cfg.QueueSize)
	fmt.Println("ORM diffs:", cfg.CaptureORMDiffs())
	// Output:
	// level=WARN msg="audit: unknown environment variable ignored" name=AUDIT_BACH_SIZE did_you_mean=AUDIT_BATCH_SIZE
	// schema: public
	// exclude: [/health /metrics /docs /openapi.json /redoc /internal/* /ping]
	// /internal/jobs excluded: true
	// bot is: service
	// skip: [OPTIONS HEAD]
	// batch: 500 every 250ms queue: 10000
	// ORM diffs: true
}

// Every problem is reported at once, each naming its variable.
func ExampleConfigFromEnvironment_errors() {
	_, err := core.ConfigFromEnvironment([]string{
		"AUDIT_BATCH_SIZE=abc",
		"AUDIT_LOG_ANONYMOUS=maybe",
		"AUDIT_JWT_SECRET=changeme",
	}, slog.New(slog.DiscardHandler))
	fmt.Println(err)
	// Output:
	// AUDIT_LOG_ANONYMOUS: "maybe" is not a boolean (want true/false, 1/0, yes/no or on/off)
	// AUDIT_BATCH_SIZE: "abc" is not a whole number
	// AUDIT_JWT_SECRET: the secret is 8 bytes; at least 32 are required, because a shorter HMAC secret can be recovered by brute force from any token it signed (RFC 7518 section 3.2)
}

// A Config built by hand is useful as its zero value; Validate names the fields.
func ExampleConfig_Validate() {
	var cfg core.Config
	fmt.Println("zero value:", cfg.Validate())

	cfg.BatchSize = 1000
	cfg.QueueSize = 100
	cfg.SkipMethods = []string{"options"}
	fmt.Println(cfg.Validate())
	// Output:
	// zero value: <nil>
	// SkipMethods: "options" is not upper case (methods are case-sensitive; did you mean "OPTIONS"?)
	// QueueSize: 100 is smaller than BatchSize (1000); the queue must hold at least one batch
}
