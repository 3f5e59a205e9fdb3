package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/auditkit/auditkit/core"
)

var verifyExportCommand = &command{
	name:    "verify-export",
	summary: "verify a chain export against its manifest, without the database",
	run:     runVerifyExport,
	args:    "FILE MANIFEST",
	flags: func(fs *flag.FlagSet) any {
		return fs.String("public-key", "", "Ed25519 public key (PKIX PEM text or a file) to check the manifest's and checkpoint's signatures")
	},
}

func runVerifyExport(_ context.Context, env *cmdEnv, args []string) int {
	pubFlag := env.opts.(*string)
	// Flags may follow the two files.
	if len(args) > 2 {
		if err := env.flags.Parse(args[2:]); err != nil {
			return exitUsage
		}
		args = append(args[:2:2], env.flags.Args()...)
	}
	if len(args) != 2 {
		fmt.Fprintf(env.stderr, "%s: want FILE MANIFEST, got %d arguments\n", env.flags.Name(), len(args))
		env.flags.Usage()
		return exitUsage
	}
	var pub ed25519.PublicKey
	if *pubFlag != "" {
		var err error
		if pub, err = loadPublicKey(*pubFlag); err != nil {
			return env.fail(err)
		}
	} else {
		fmt.Fprintln(env.stderr, "no -public-key: the manifest's signature is not checked, so it vouches for nothing")
	}
	mb, err := os.ReadFile(args[1])
	if err != nil {
		return env.fail(err)
	}
	var m core.ExportManifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return env.fail(fmt.Errorf("%s: %w", args[1], err))
	}
	f, err := os.Open(args[0])
	if err != nil {
		return env.fail(err)
	}
	defer f.Close()
	rep, err := core.VerifyExport(f, &m, pub)
	if err != nil {
		return env.fail(fmt.Errorf("%s: %w", args[0], err))
	}
	printReport(env.stdout, rep)
	if !rep.OK {
		return exitFail
	}
	return exitOK
}
