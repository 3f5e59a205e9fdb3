package core_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/chaintest"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// runPython runs docs/verify_chain.py on the export b and returns whether it said OK and, if
// not, the seq it named.
func runPython(t *testing.T, b []byte) (bool, int64) {
	t.Helper()
	py, err := osexec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is needed to run docs/verify_chain.py: ", err)
	}
	file := filepath.Join(t.TempDir(), "export.ndjson")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := osexec.Command(py, filepath.Join("..", "docs", "verify_chain.py"), file).CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err == nil {
		if !strings.HasPrefix(text, "OK ") {
			t.Fatalf("verify_chain.py exited 0 with %q", text)
		}
		return true, 0
	}
	rest, ok := strings.CutPrefix(text, "BAD ")
	num, _, _ := strings.Cut(rest, ":")
	seq, perr := strconv.ParseInt(num, 10, 64)
	if !ok || perr != nil {
		t.Fatalf("verify_chain.py: %v: %q", err, text)
	}
	return false, seq
}

// firstBadSeq is the lowest seq a report names, leaving out the manifest's own problems.
func firstBadSeq(rep *core.VerifyReport) int64 {
	var min int64
	for _, p := range rep.Problems {
		if p.Kind == core.ProblemManifestMismatch || p.Kind == core.ProblemManifestSignature {
			continue
		}
		if min == 0 || p.Seq < min {
			min = p.Seq
		}
	}
	return min
}

func TestVerifyExportAndPython(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := chaintest.Append(ctx, db.Pool, "acme", 60); err != nil {
		t.Fatal(err)
	}
	if _, err := chaintest.Append(ctx, db.Pool, "", 5); err != nil {
		t.Fatal(err)
	}
	signCheckpoints(t, db.Pool, testKey, "acme", core.CheckpointKindCheckpoint, 20, 50)
	st, err := store.New(db.Pool, store.Options{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)

	export := func(sc store.Scope, from, to int64) []byte {
		var buf bytes.Buffer
		n, err := st.Export(ctx, sc, store.Filter{}, store.ExportOptions{Format: store.FormatChain, FromSeq: from, ToSeq: to}, &buf)
		if err != nil {
			t.Fatal(err)
		}
		if lines := int64(bytes.Count(buf.Bytes(), []byte("\n"))); lines != n {
			t.Fatalf("%d records, %d lines", n, lines)
		}
		return buf.Bytes()
	}
	manifest := func(b []byte, key string, to int64) *core.ExportManifest {
		cp, err := core.ManifestCheckpoint(ctx, db.Pool, db.Schema, key, to)
		if err != nil {
			t.Fatal(err)
		}
		m, err := core.NewExportManifest(bytes.NewReader(b), key, cp)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Sign(testKey); err != nil {
			t.Fatal(err)
		}
		j, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back core.ExportManifest
		if err := json.Unmarshal(j, &back); err != nil {
			t.Fatal(err)
		}
		return &back
	}

	clean := export(store.TenantScope("acme"), 0, 0)
	m := manifest(clean, "acme", 60)
	if m.Rows != 60 || m.FromSeq != 1 || m.ToSeq != 60 || m.Checkpoint == nil || m.Checkpoint.Seq != 50 {
		t.Fatalf("manifest %+v", m)
	}
	rep, err := core.VerifyExport(bytes.NewReader(clean), m, testPub())
	if err != nil || !rep.OK || rep.Rows != 60 || rep.Checkpoints != 1 {
		t.Fatalf("clean export: %+v, %v", rep, err)
	}
	if ok, _ := runPython(t, clean); !ok {
		t.Fatal("verify_chain.py rejects a clean export")
	}
	// The chain without a tenant, and a range whose start is vouched for by no one.
	for _, tc := range []struct {
		sc       store.Scope
		key      string
		from, to int64
	}{{store.AllTenantsScope(), "", 0, 0}, {store.TenantScope("acme"), "acme", 21, 55}} {
		b := export(tc.sc, tc.from, tc.to)
		rep, err := core.VerifyExport(bytes.NewReader(b), manifest(b, tc.key, max(tc.to, 60)), testPub())
		if ok, _ := runPython(t, b); err != nil || !rep.OK || !ok {
			t.Errorf("export of %q from %d to %d: %+v, %v, python %v", tc.key, tc.from, tc.to, rep, err, ok)
		}
	}

	// A manifest signed by another key, or for another file.
	other := *m
	if err := other.Sign(otherKey); err != nil {
		t.Fatal(err)
	}
	if rep, _ := core.VerifyExport(bytes.NewReader(clean), &other, testPub()); rep.OK || rep.Problems[0].Kind != core.ProblemManifestSignature {
		t.Errorf("manifest of another key: %+v", rep)
	}

	lines := strings.SplitAfter(string(clean), "\n")
	lines = lines[:len(lines)-1]
	tampered := []struct {
		name string
		edit func(l []string) []string
		seq  int64
	}{
		{"edited field", func(l []string) []string {
			l[16] = strings.Replace(l[16], `"invoice.update"`, `"invoice.paid"`, 1)
			return l
		}, 17},
		{"removed line", func(l []string) []string { return append(l[:16:16], l[17:]...) }, 17},
		{"swapped lines", func(l []string) []string { l[21], l[22] = l[22], l[21]; return l }, 22},
		{"last line removed", func(l []string) []string { return l[:59] }, 60},
	}
	for _, tc := range tampered {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(strings.Join(tc.edit(append([]string(nil), lines...)), ""))
			rep, err := core.VerifyExport(bytes.NewReader(b), m, testPub())
			if err != nil {
				t.Fatal(err)
			}
			pyOK, pySeq := runPython(t, b)
			for _, p := range rep.Problems {
				t.Logf("%s at %d: %s", p.Kind, p.Seq, p.Reason)
			}
			if rep.OK {
				t.Fatal("VerifyExport found nothing")
			}
			if got := firstBadSeq(rep); got != tc.seq {
				t.Errorf("VerifyExport's first bad seq is %d, want %d", got, tc.seq)
			}
			// The script has no manifest: a file cut short is a valid chain to it.
			if cut := strings.HasPrefix(tc.name, "last"); pyOK != cut || (!cut && pySeq != tc.seq) {
				t.Errorf("verify_chain.py: ok %v at seq %d; VerifyExport: first bad seq %d", pyOK, pySeq, tc.seq)
			}
		})
	}
}
