package core

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
)

// chainExampleFields are the fields of the worked example in docs/chain.md.
func chainExampleFields() ChainFields {
	var f ChainFields
	set := func(n int, s string) { f[n-1] = []byte(s) }
	set(1, "acme")
	set(2, "1")
	f[2] = make([]byte, 32)
	set(4, "01938a6e-5f3c-7a21-9c4e-2b7d0f1e8a90")
	set(5, "1772368215123456")
	set(6, "update")
	set(7, "invoice.update")
	set(8, "info")
	set(9, "acme")
	set(10, "Acme")
	set(11, "u-7")
	set(12, "tenant_user")
	set(14, "jwt:HS256")
	set(15, "invoices")
	set(16, "42")
	set(19, `{"total": {"to": 12.5, "from": 10}}`)
	set(20, "req-1")
	set(27, "203.0.113.7")
	set(32, "2")
	return f
}

// docBlock returns the code block after marker in docs/chain.md, without white space.
func docBlock(t *testing.T, marker string) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/chain.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- " + marker + " -->\n```\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatalf("docs/chain.md has no block after <!-- %s -->", marker)
	}
	return strings.Join(strings.Fields(string(m[1])), "")
}

// TestChainEncodingWorkedExample holds the encoding and the hash to the worked example that
// docs/chain.md publishes for verifiers in other languages.
func TestChainEncodingWorkedExample(t *testing.T) {
	f := chainExampleFields()
	enc := f.Encode(nil)
	if got, want := hex.EncodeToString(enc), docBlock(t, "chain-example-encoding"); got != want {
		t.Fatalf("encoding\n got %s\nwant %s (docs/chain.md)", got, want)
	}
	h := ChainHash(&f)
	if got, want := hex.EncodeToString(h[:]), docBlock(t, "chain-example-hash"); got != want {
		t.Fatalf("row_hash %s, docs/chain.md says %s", got, want)
	}
	if h != sha256.Sum256(enc) {
		t.Fatal("ChainHash differs from SHA-256 of Encode")
	}
}

// TestChainEncodingFraming: NULL, empty and non-empty values encode differently, and moving a
// byte from one field to the next changes the encoding (the lengths frame the fields).
func TestChainEncodingFraming(t *testing.T) {
	var a, b, c ChainFields
	b[5] = []byte{}
	c[5] = []byte("x")
	encs := [][]byte{a.Encode(nil), b.Encode(nil), c.Encode(nil)}
	for i := range encs {
		for j := range i {
			if bytes.Equal(encs[i], encs[j]) {
				t.Fatalf("encodings %d and %d are equal", i, j)
			}
		}
	}
	var d, e ChainFields
	d[6], d[7] = []byte("ab"), []byte("c")
	e[6], e[7] = []byte("a"), []byte("bc")
	if ChainHash(&d) == ChainHash(&e) {
		t.Fatal("shifting a byte between fields kept the hash")
	}
	if got := a.Encode([]byte("prefix")); !bytes.HasPrefix(got, []byte("prefixauditkit-chain-v1\x00")) || len(got) != 6+18+32 {
		t.Fatalf("Encode appended %q", got)
	}
}
