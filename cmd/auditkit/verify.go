package main

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/auditkit/auditkit/core"
)

var verifyCommand = &command{
	name:    "verify",
	summary: "verify the hash chain of a tenant (-tenant), or of every chain, and with -public-key its checkpoints",
	run:     runVerify,
	flags: func(fs *flag.FlagSet) any {
		o := &verifyOpts{}
		fs.Func("tenant", "verify only this tenant's chain (-tenant '' for the records without a tenant; default: every chain)", func(s string) error {
			o.tenant, o.oneTenant = s, true
			return nil
		})
		fs.Int64Var(&o.from, "from", 0, "first seq to verify (default: the start, or the latest truncation)")
		fs.Int64Var(&o.to, "to", 0, "last seq to verify (default: the head)")
		fs.StringVar(&o.publicKey, "public-key", "", "Ed25519 public key (PKIX PEM text or a file) to check the checkpoints with")
		longTimeout(fs)
		return o
	},
}

type verifyOpts struct {
	tenant    string
	oneTenant bool
	from, to  int64
	publicKey string
}

// longTimeout makes -timeout default to an hour: reading a long chain takes minutes.
func longTimeout(fs *flag.FlagSet) {
	if f := fs.Lookup("timeout"); f != nil {
		_ = f.Value.Set("1h")
		f.DefValue = "1h0m0s"
	}
}

func runVerify(ctx context.Context, env *cmdEnv, _ []string) int {
	o := env.opts.(*verifyOpts)
	if o.from < 0 || o.to < 0 || (o.to > 0 && o.to < o.from) {
		fmt.Fprintf(env.stderr, "%s: -from %d -to %d is not a range\n", env.flags.Name(), o.from, o.to)
		return exitUsage
	}
	var pub ed25519.PublicKey
	if o.publicKey != "" {
		var err error
		if pub, err = loadPublicKey(o.publicKey); err != nil {
			return env.fail(err)
		}
	}
	cfg, pool, err := env.connect(ctx)
	if err != nil {
		return env.fail(err)
	}
	defer pool.Close()
	tenants := []string{o.tenant}
	if !o.oneTenant {
		if tenants, err = core.ChainTenants(ctx, pool, cfg.Schema); err != nil {
			return env.fail(err)
		}
		fmt.Fprintf(env.stderr, "%d chains in schema %s of %s\n", len(tenants), cfg.Schema, describe(cfg.DatabaseURL))
	}
	if pub == nil {
		fmt.Fprintln(env.stderr, "no -public-key: checkpoints are not checked, so a chain rewritten with recomputed hashes would pass")
	}
	bad := 0
	for _, tenant := range tenants {
		var total int64
		_ = pool.QueryRow(ctx, `SELECT seq FROM `+quoteIdent(cfg.Schema)+`.audit_chain_heads WHERE tenant_key = $1`, tenant).Scan(&total)
		if o.to > 0 && o.to < total {
			total = o.to
		}
		if o.from > 1 {
			total -= o.from - 1
		}
		prog := newProgress(env.stderr, fmt.Sprintf("chain %q", tenant), total)
		rep, err := core.Verify(ctx, pool, tenant, core.VerifyOptions{Schema: cfg.Schema, FromSeq: o.from, ToSeq: o.to,
			PublicKey: pub, Progress: prog.update})
		prog.done()
		if err != nil {
			return env.fail(fmt.Errorf("chain %q: %w", tenant, err))
		}
		printReport(env.stdout, rep)
		if !rep.OK {
			bad++
		}
	}
	if bad > 0 {
		fmt.Fprintf(env.stderr, "%s: %d of %d chains have problems\n", env.flags.Name(), bad, len(tenants))
		return exitFail
	}
	return exitOK
}

// printReport writes a report: one line when the chain is intact, then one line per problem.
func printReport(w io.Writer, rep *core.VerifyReport) {
	state := "OK"
	if !rep.OK {
		state = fmt.Sprintf("%d PROBLEMS", len(rep.Problems)+int(rep.MoreProblems))
	}
	fmt.Fprintf(w, "chain %q: %s: %d records", rep.TenantKey, state, rep.Rows)
	if rep.Rows > 0 {
		fmt.Fprintf(w, ", seq %d to %d, first prev_hash %s, last row_hash %s", rep.From, rep.To,
			hex.EncodeToString(rep.FirstPrevHash[:]), hex.EncodeToString(rep.LastRowHash[:]))
	}
	fmt.Fprintf(w, ", %d checkpoints checked\n", rep.Checkpoints)
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  seq %d: %s: %s\n", p.Seq, p.Kind, p.Reason)
	}
	if rep.MoreProblems > 0 {
		fmt.Fprintf(w, "  and %d more problems\n", rep.MoreProblems)
	}
}

// progress reports the rows verified: a bar redrawn in place when w is a terminal, otherwise a
// line per report (every 100,000 rows).
type progress struct {
	w       io.Writer
	what    string
	total   int64
	tty     bool
	started time.Time
	drawn   bool
}

func newProgress(w io.Writer, what string, total int64) *progress {
	p := &progress{w: w, what: what, total: total, started: time.Now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(rows int64) {
	rate := float64(rows) / max(time.Since(p.started).Seconds(), 1e-3)
	if !p.tty {
		if rows > 0 && rows%100_000 == 0 {
			fmt.Fprintf(p.w, "%s: %d rows verified (%.0f rows/s)\n", p.what, rows, rate)
		}
		return
	}
	const width = 30
	frac := 1.0
	if p.total > 0 {
		frac = min(float64(rows)/float64(p.total), 1)
	}
	n := int(frac * width)
	fmt.Fprintf(p.w, "\r%s [%s%s] %3.0f%% %d/%d rows, %.0f rows/s ", p.what, strings.Repeat("#", n), strings.Repeat(".", width-n),
		frac*100, rows, p.total, rate)
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// readKeyPEM returns the PEM text s, or the contents of the file s names.
func readKeyPEM(s string) ([]byte, error) {
	if strings.HasPrefix(strings.TrimSpace(s), "-----BEGIN") {
		return []byte(s), nil
	}
	b, err := os.ReadFile(s)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	return b, nil
}

// loadPublicKey reads an Ed25519 public key in PKIX PEM ("PUBLIC KEY"), given inline or as a file.
func loadPublicKey(s string) (ed25519.PublicKey, error) {
	b, err := readKeyPEM(s)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("public key: want a PEM block of type PUBLIC KEY (PKIX)")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key: a %T, not Ed25519", k)
	}
	return pub, nil
}

// loadPrivateKey reads an Ed25519 private key in PKCS#8 PEM ("PRIVATE KEY"), inline or as a file.
func loadPrivateKey(s string) (ed25519.PrivateKey, error) {
	b, err := readKeyPEM(s)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("signing key: want a PEM block of type PRIVATE KEY (PKCS#8)")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key: a %T, not Ed25519", k)
	}
	return priv, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
