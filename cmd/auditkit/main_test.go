package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

// runCmd runs the command line args with environ and returns the exit status and the output.
func runCmd(t *testing.T, environ []string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, environ, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestMigrateThenCheck: check refuses an empty schema and names the fix; migrate creates the
// tables and says what it applied; check then succeeds, and a second migrate applies nothing.
func TestMigrateThenCheck(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	flags := []string{"-database-url", pgtest.URL(), "-schema", db.Schema}

	code, stdout, stderr := runCmd(t, nil, append([]string{"check"}, flags...)...)
	if code != exitFail {
		t.Fatalf("check on an empty schema: exit %d, want %d; stdout %q, stderr %q", code, exitFail, stdout, stderr)
	}
	for _, want := range []string{"audit schema not ready", db.Schema, "auditkit_migrations does not exist", core.MigrateCommand + " -schema " + db.Schema} {
		if !strings.Contains(stderr, want) {
			t.Errorf("check's message lacks %q:\n%s", want, stderr)
		}
	}

	code, stdout, stderr = runCmd(t, nil, append([]string{"migrate"}, flags...)...)
	if code != exitOK {
		t.Fatalf("migrate: exit %d; stderr %q", code, stderr)
	}
	ms, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	versions := make([]string, len(ms))
	for i, m := range ms {
		versions[i] = fmt.Sprint(m.Version)
	}
	if want := "schema " + db.Schema + " in database test on 127.0.0.1:5432 as postgres: applied migration " + strings.Join(versions, ", ") +
		"\ncurrent version: " + versions[len(versions)-1] + "\n"; stdout != want {
		t.Errorf("migrate printed %q, want %q", stdout, want)
	}

	code, stdout, stderr = runCmd(t, nil, append([]string{"check"}, flags...)...)
	if code != exitOK || !strings.Contains(stdout, fmt.Sprintf("ready (version %d)", core.SchemaVersion)) {
		t.Fatalf("check after migrate: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// The environment gives the defaults, as for core.ConfigFromEnv.
	environ := []string{"AUDIT_DATABASE_URL=" + pgtest.URL(), "AUDIT_DB_SCHEMA=" + db.Schema, "PATH=/bin"}
	code, stdout, stderr = runCmd(t, environ, "migrate")
	if code != exitOK || !strings.Contains(stdout, ": up to date\ncurrent version: "+versions[len(versions)-1]+"\n") {
		t.Fatalf("migrate again from the environment: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestUsage: help lists the commands; bad commands, flags and arguments print usage and exit 2.
func TestUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args           []string
		code           int
		stdout, stderr string // fragments expected
	}{
		{nil, exitUsage, "", "Usage: auditkit <command>"},
		{[]string{"help"}, exitOK, "  migrate        create the audit tables", ""},
		{[]string{"-h"}, exitOK, "  check          check, as core.Open does", ""},
		{[]string{"--help"}, exitOK, "Usage: auditkit <command>", ""},
		{[]string{"help", "migrate"}, exitOK, "-database-url", ""},
		{[]string{"help", "nope"}, exitUsage, "", `unknown command "nope"`},
		{[]string{"nope"}, exitUsage, "", `unknown command "nope"`},
		{[]string{"migrate", "-bogus"}, exitUsage, "", "flag provided but not defined: -bogus"},
		{[]string{"check", "-timeout", "soon"}, exitUsage, "", `invalid value "soon" for flag -timeout`},
		{[]string{"check", "extra"}, exitUsage, "", `unexpected argument "extra"`},
		{[]string{"migrate", "-h"}, exitOK, "", "Usage: auditkit migrate [flags]"},
		{[]string{"check"}, exitFail, "", "no database: give -database-url or set AUDIT_DATABASE_URL"},
		{[]string{"check", "-database-url", "mysql://db/app"}, exitFail, "", `scheme "mysql" is not postgres://`},
		{[]string{"migrate", "-database-url", pgtest.URL(), "-schema", "Bad-Name"}, exitFail, "", `Schema: "Bad-Name"`},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCmd(t, nil, tt.args...)
		if code != tt.code || !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("auditkit %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				tt.args, code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
		}
	}
}
