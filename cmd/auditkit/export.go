package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

var exportCommand = &command{
	name:    "export",
	summary: "export a tenant's records to a file; -format chain with -signing-key writes a signed manifest for verify-export",
	run:     runExport,
	flags: func(fs *flag.FlagSet) any {
		o := &exportOpts{}
		fs.Func("tenant", "the tenant to export (required; -tenant '' for the records without a tenant)", func(s string) error {
			o.tenant, o.tenantSet = s, true
			return nil
		})
		fs.StringVar(&o.format, "format", "chain", "chain, ndjson or csv")
		fs.StringVar(&o.out, "o", "", "file to write (required)")
		fs.Int64Var(&o.from, "from", 0, "first seq of a chain export (default: the start)")
		fs.Int64Var(&o.to, "to", 0, "last seq of a chain export (default: the end)")
		fs.StringVar(&o.manifest, "manifest", "", "manifest file of a chain export (default with -signing-key: FILE.manifest.json)")
		fs.StringVar(&o.signingKey, "signing-key", "", "Ed25519 private key (PKCS#8 PEM text or a file) to sign the manifest with")
		longTimeout(fs)
		return o
	},
}

type exportOpts struct {
	tenant               string
	tenantSet            bool
	format, out          string
	from, to             int64
	manifest, signingKey string
}

func runExport(ctx context.Context, env *cmdEnv, _ []string) int {
	o := env.opts.(*exportOpts)
	format, err := store.ParseFormat(o.format)
	switch {
	case err != nil:
		fmt.Fprintf(env.stderr, "%s: -format: %v\n", env.flags.Name(), err)
		return exitUsage
	case !o.tenantSet || o.out == "":
		fmt.Fprintf(env.stderr, "%s: -tenant and -o are required\n", env.flags.Name())
		return exitUsage
	case format != store.FormatChain && (o.manifest != "" || o.signingKey != "" || o.from != 0 || o.to != 0):
		fmt.Fprintf(env.stderr, "%s: -manifest, -signing-key, -from and -to go with -format chain\n", env.flags.Name())
		return exitUsage
	case format != store.FormatChain && o.tenant == "":
		fmt.Fprintf(env.stderr, "%s: -tenant '' (the records without a tenant) goes with -format chain only\n", env.flags.Name())
		return exitUsage
	case o.manifest != "" && o.signingKey == "":
		fmt.Fprintf(env.stderr, "%s: a manifest is signed: give -signing-key\n", env.flags.Name())
		return exitUsage
	}
	var priv []byte
	if o.signingKey != "" {
		k, err := loadPrivateKey(o.signingKey)
		if err != nil {
			return env.fail(err)
		}
		priv = k
		if o.manifest == "" {
			o.manifest = o.out + ".manifest.json"
		}
	}
	cfg, pool, err := env.connect(ctx)
	if err != nil {
		return env.fail(err)
	}
	defer pool.Close()
	st, err := store.New(pool, store.Options{Schema: cfg.Schema})
	if err != nil {
		return env.fail(err)
	}
	defer st.Close()
	sc := store.TenantScope(o.tenant)
	if o.tenant == "" {
		sc = store.AllTenantsScope() // for chain: the chain of tenant key ""
	}
	f, err := os.OpenFile(o.out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return env.fail(err)
	}
	defer f.Close()
	n, err := st.Export(ctx, sc, store.Filter{}, store.ExportOptions{Format: format, FromSeq: o.from, ToSeq: o.to}, f)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return env.fail(fmt.Errorf("%s: %w", o.out, err))
	}
	fmt.Fprintf(env.stderr, "%d records of tenant %q written to %s\n", n, o.tenant, o.out)
	if priv == nil {
		return exitOK
	}
	if _, err := f.Seek(0, 0); err != nil {
		return env.fail(err)
	}
	m, err := core.NewExportManifest(f, o.tenant, nil)
	if err != nil {
		return env.fail(err)
	}
	if m.Rows == 0 {
		return env.fail(errors.New("the export is empty: no manifest written"))
	}
	if m.Checkpoint, err = core.ManifestCheckpoint(ctx, pool, cfg.Schema, o.tenant, m.ToSeq); err != nil {
		return env.fail(err)
	}
	if err := m.Sign(priv); err != nil {
		return env.fail(err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return env.fail(err)
	}
	if err := os.WriteFile(o.manifest, append(b, '\n'), 0o600); err != nil {
		return env.fail(err)
	}
	cp := "no checkpoint"
	if m.Checkpoint != nil {
		cp = fmt.Sprintf("checkpoint at seq %d", m.Checkpoint.Seq)
	}
	fmt.Fprintf(env.stderr, "manifest (seq %d to %d, %s) signed with key %s written to %s\n", m.FromSeq, m.ToSeq, cp, m.KeyID, o.manifest)
	return exitOK
}
