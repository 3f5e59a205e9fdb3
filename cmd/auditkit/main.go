// Command auditkit manages the audit tables of an auditkit installation from a shell.
//
// Usage:
//
//	auditkit migrate        create or upgrade the audit tables (-partition: partition them online)
//	auditkit check          check that a writer could write to them
//	auditkit checkpoint     sign a checkpoint of every chain that moved (AUDIT_SIGNING_KEY)
//	auditkit tail           follow new audit records live
//	auditkit verify         verify the hash chains, and with -public-key their checkpoints
//	auditkit verify-export  verify a chain export against its signed manifest, offline
//	auditkit export         export a tenant's records (-format chain for verify-export)
//	auditkit erase          erase a data subject by destroying its keys (-yes to confirm)
//	auditkit partitions     list the partitions, report strays, drop (-archive) old ones
//	auditkit ingest         store the records of a NATS JetStream stream (natsaudit)
//	auditkit help [command] show usage, or a command's flags
//
// Every command takes -database-url, -schema and -timeout. Long work (verify, export) reports
// progress on standard error: a one-line bar on a terminal, periodic counts otherwise; a finding
// makes the exit status 1.
//
// The database URL and schema default to AUDIT_DATABASE_URL and AUDIT_DB_SCHEMA, as read by
// core.ConfigFromEnv. Without installing it:
//
//	go run github.com/auditkit/auditkit/cmd/auditkit@latest migrate -schema audit
//
// Exit status: 0 on success, 1 when the command failed, 2 for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// command is one subcommand. Each lives in a file of its own and is listed in commands.
type command struct {
	name    string
	summary string
	// run executes the command with its arguments (after the command name); env holds the
	// common flags, already parsed when run is called.
	run func(ctx context.Context, env *cmdEnv, args []string) int
	// flags, when set, defines the command's own flags on fs and returns what run reads them
	// from (env.opts).
	flags func(fs *flag.FlagSet) any
	// args names the positional arguments the command takes ("" = none); run gets them.
	args string
}

// commands are the subcommands, in the order usage lists them.
var commands = []*command{migrateCommand, checkCommand, checkpointCommand, tailCommand,
	verifyCommand,
	verifyExportCommand,
	exportCommand,
	eraseCommand,
	ingestCommand,
	partitionsCommand,
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args (without the program name) with the AUDIT_* variables of
// environ and returns the exit status.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 {
			if c := lookup(rest[0]); c != nil {
				env := newCmdEnv(c, environ, stdout, stderr)
				env.flags.SetOutput(stdout)
				env.flags.Usage()
				return exitOK
			}
			fmt.Fprintf(stderr, "auditkit: unknown command %q\n\n", rest[0])
			usage(stderr)
			return exitUsage
		}
		usage(stdout)
		return exitOK
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(stderr, "auditkit: unknown command %q\n\n", name)
		usage(stderr)
		return exitUsage
	}
	env := newCmdEnv(c, environ, stdout, stderr)
	if err := env.flags.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage // the flag package has printed the problem and the usage
	}
	if env.flags.NArg() > 0 && c.args == "" {
		fmt.Fprintf(stderr, "auditkit %s: unexpected argument %q\n", c.name, env.flags.Arg(0))
		env.flags.Usage()
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, env.timeout)
	defer cancel()
	return c.run(ctx, env, env.flags.Args())
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: auditkit <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	width := len("help")
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-*s  %s\n", width, "help", "show this text, or a command's flags (auditkit help migrate)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The database URL and schema default to AUDIT_DATABASE_URL and AUDIT_DB_SCHEMA.")
	fmt.Fprintln(w, "Exit status: 0 on success, 1 when the command failed, 2 for a usage error.")
}

// cmdEnv holds what every command shares: its flag set with the common flags, and the output.
type cmdEnv struct {
	flags          *flag.FlagSet
	environ        []string
	databaseURL    string
	schema         string
	timeout        time.Duration
	opts           any // the command's own flags (command.flags)
	stdout, stderr io.Writer
}

func newCmdEnv(c *command, environ []string, stdout, stderr io.Writer) *cmdEnv {
	env := &cmdEnv{environ: environ, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("auditkit "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&env.databaseURL, "database-url", "", "PostgreSQL URL or key=value connection string (default: AUDIT_DATABASE_URL)")
	fs.StringVar(&env.schema, "schema", "", "schema that holds audit_logs (default: AUDIT_DB_SCHEMA, else public)")
	fs.DurationVar(&env.timeout, "timeout", time.Minute, "give up after this long")
	if c.flags != nil {
		env.opts = c.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: auditkit %s [flags]%s\n\n%s\n\nFlags:\n", c.name, strings.TrimRight(" "+c.args, " "), c.summary)
		fs.PrintDefaults()
	}
	env.flags = fs
	return env
}

// connect returns the configuration (see config), with its defaults, and a pool on its database.
func (env *cmdEnv) connect(ctx context.Context) (core.Config, *pgxpool.Pool, error) {
	cfg, err := env.config()
	if err != nil {
		return core.Config{}, nil, err
	}
	cfg = cfg.WithDefaults()
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return core.Config{}, nil, err
	}
	return cfg, pool, nil
}

// config returns the configuration from the AUDIT_* variables, with the -database-url and
// -schema flags taking precedence. Warnings about the variables go to stderr.
func (env *cmdEnv) config() (core.Config, error) {
	var audit []string
	for _, kv := range env.environ {
		if strings.HasPrefix(strings.ToUpper(kv), "AUDIT_") {
			audit = append(audit, kv)
		}
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := core.ConfigFromEnvironment(audit, logger)
	if err != nil {
		return core.Config{}, err
	}
	if env.databaseURL != "" {
		cfg.DatabaseURL = env.databaseURL
	}
	if env.schema != "" {
		cfg.Schema = env.schema
	}
	if err := cfg.Validate(); err != nil {
		return core.Config{}, err
	}
	if cfg.DatabaseURL == "" {
		return core.Config{}, errors.New("no database: give -database-url or set AUDIT_DATABASE_URL")
	}
	return cfg, nil
}

// fail reports err for the command and returns exitFail.
func (env *cmdEnv) fail(err error) int {
	fmt.Fprintf(env.stderr, "%s: %v\n", env.flags.Name(), err)
	return exitFail
}

// describe names a database without its password: "database app on db:5432 as audit".
func describe(databaseURL string) string {
	cfg, err := pgconn.ParseConfig(databaseURL)
	if err != nil {
		return "the database"
	}
	return fmt.Sprintf("database %s on %s:%d as %s", cfg.Database, cfg.Host, cfg.Port, cfg.User)
}
