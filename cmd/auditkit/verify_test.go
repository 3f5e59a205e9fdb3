package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/chaintest"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// writeKeys writes an Ed25519 key pair as PEM files (PKCS#8 private, PKIX public) and returns
// their paths and the private key.
func writeKeys(t *testing.T) (privFile, pubFile string, priv ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	privFile, pubFile = filepath.Join(dir, "signing.pem"), filepath.Join(dir, "public.pem")
	if err := os.WriteFile(privFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	return privFile, pubFile, priv
}

// TestVerifyExportCommands: verify passes intact chains (all of them, one, a range), export
// writes a chain and its signed manifest, verify-export passes them without the database; after
// tampering, verify and verify-export exit 1 naming the record.
func TestVerifyExportCommands(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	for _, k := range []string{"acme", ""} {
		if _, err := chaintest.Append(ctx, db.Pool, k, 40); err != nil {
			t.Fatal(err)
		}
	}
	privFile, pubFile, priv := writeKeys(t)
	if _, err := core.CreateCheckpoints(ctx, db.Pool, db.Schema, priv, time.Now()); err != nil {
		t.Fatal(err)
	}
	pubPEM, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	flags := []string{"-database-url", pgtest.URL(), "-schema", db.Schema}
	cmd := func(want int, args ...string) (string, string) {
		t.Helper()
		code, stdout, stderr := runCmd(t, nil, args...)
		if code != want {
			t.Fatalf("%v: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, want, stdout, stderr)
		}
		return stdout, stderr
	}

	out, _ := cmd(exitOK, append([]string{"verify", "-public-key", pubFile}, flags...)...)
	for _, want := range []string{`chain "": OK: 40 records, seq 1 to 40`, `chain "acme": OK: 40 records`, "1 checkpoints checked"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify's output lacks %q:\n%s", want, out)
		}
	}
	out, _ = cmd(exitOK, append([]string{"verify", "-tenant", "acme", "-from", "5", "-to", "20", "-public-key", string(pubPEM)}, flags...)...)
	if !strings.Contains(out, `chain "acme": OK: 16 records, seq 5 to 20`) {
		t.Errorf("verify of a range: %s", out)
	}
	_, stderr := cmd(exitOK, append([]string{"verify", "-tenant", ""}, flags...)...)
	if !strings.Contains(stderr, "no -public-key") {
		t.Errorf("verify without a key does not warn: %s", stderr)
	}

	file := filepath.Join(t.TempDir(), "acme.ndjson")
	_, stderr = cmd(exitOK, append([]string{"export", "-tenant", "acme", "-format", "chain", "-o", file, "-signing-key", privFile}, flags...)...)
	if !strings.Contains(stderr, "40 records") || !strings.Contains(stderr, "checkpoint at seq 40") {
		t.Errorf("export: %s", stderr)
	}
	manifest := file + ".manifest.json"
	out, _ = cmd(exitOK, "verify-export", file, manifest, "-public-key", pubFile)
	if !strings.Contains(out, `chain "acme": OK: 40 records`) {
		t.Errorf("verify-export: %s", out)
	}

	// The file edited: its hash and the record's break.
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	lines[16] = strings.Replace(lines[16], `"invoice.update"`, `"invoice.paid"`, 1)
	if err := os.WriteFile(file, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ = cmd(exitFail, "verify-export", "-public-key", pubFile, file, manifest)
	for _, want := range []string{"seq 17: hash_mismatch", "manifest_mismatch", "SHA-256"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify-export of an edited file lacks %q:\n%s", want, out)
		}
	}
	// The database edited.
	if _, err := db.Pool.Exec(ctx, `UPDATE audit_logs SET action = 'invoice.paid' WHERE tenant_id = 'acme' AND seq = 23`); err != nil {
		t.Fatal(err)
	}
	out, stderr = cmd(exitFail, append([]string{"verify", "-public-key", pubFile}, flags...)...)
	if !strings.Contains(out, `chain "acme": 1 PROBLEMS`) || !strings.Contains(out, "seq 23: hash_mismatch") || !strings.Contains(stderr, "1 of 2 chains have problems") {
		t.Errorf("verify after an edit:\n%s\n%s", out, stderr)
	}

	cmd(exitUsage, "verify-export", file)
	cmd(exitUsage, append([]string{"verify", "-from", "9", "-to", "2"}, flags...)...)
	cmd(exitUsage, append([]string{"export", "-format", "chain", "-o", file}, flags...)...)
	cmd(exitFail, append([]string{"export", "-tenant", "acme", "-o", file, "-signing-key", pubFile}, flags...)...)
}
