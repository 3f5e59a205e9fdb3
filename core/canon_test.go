package core

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// canonStrings are strings of every escape class: JSON's and jsonb's escapes, the HTML characters
// encoding/json escapes and jsonb does not, U+2028 and U+2029, control characters, non-ASCII
// text, invalid UTF-8 and NUL (which the redactor drops), and strings the redactor rewrites.
var canonStrings = []string{
	"", "a", "plain text", `q"uote`, `back\slash`, "<b>&amp;</b>", "line\u2028sep\u2029para",
	"\b\f\n\r\t", "\x01\x02\x1f\x7f", "é", "日本語", "emoji 🎉", "bad \xff utf8 \xc3", "nul\x00byte",
	"\ufffd", "4111111111111111", "user@example.com", "https://u:pw@example.com/x?token=abc",
	"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl",
	`{"nested":"json","n":1.50}`, "[1, 2.0e1]", strings.Repeat("long ", 40),
}

// canonKeys are keys of equal and of different lengths, keys the redactor masks, and keys that
// send their map through encoding/json (one that must be sanitised, one that names a secret).
var canonKeys = []string{
	"a", "b", "z", "aa", "ab", "ba", "id", "ip", "abc", "name", "seats", "email", "notes",
	"password", "token", "é", "日本", "<k>", "q\"k", "line\u2028", "k\tk", "created_at",
	"Z", "A1", "a_b", "xyzzy", "secret", "api_key",
}

var canonSlowKeys = []string{"bad\xffkey", "nul\x00key"}

// canonNumbers are JSON numbers in every form; the first overflows numeric, so that its
// document's text is given up.
var canonNumbers = []json.Number{
	"1e999999999999", "0", "-0", "1", "-1", "1.50", "12.340e1", "1e21", "1E-7", "-1.0e+3", "0.000", "0e10",
	"123456789012345678901234567890", "4111111111111111", "1.5e-400", "-2.5E+2", "0.1e1",
	"100e-2", "9.999999999999999e22",
}

// canonGen makes random values and records from a seed.
type canonGen struct {
	r *rand.Rand
	// ordinary restricts values to maps of strings, numbers, bools and nested maps and arrays,
	// whose texts the encoder must always make.
	ordinary bool
	// stored leaves out values PostgreSQL refuses (a number numeric cannot hold).
	stored bool
	extra  []string // strings from the fuzzer
}

func (g *canonGen) str() string {
	if len(g.extra) > 0 && g.r.IntN(4) == 0 {
		return g.extra[g.r.IntN(len(g.extra))]
	}
	return canonStrings[g.r.IntN(len(canonStrings))]
}

func (g *canonGen) key() string {
	switch n := g.r.IntN(40); {
	case n == 0 && !g.ordinary:
		return canonSlowKeys[g.r.IntN(len(canonSlowKeys))]
	case n == 1 && len(g.extra) > 0 && !g.ordinary:
		return g.extra[g.r.IntN(len(g.extra))]
	}
	return canonKeys[g.r.IntN(len(canonKeys))]
}

func (g *canonGen) value(depth int) any {
	n := 12
	if !g.ordinary {
		n = 22
	}
	if depth > 4 {
		n = 8
	}
	switch g.r.IntN(n) {
	case 0:
		return nil
	case 1:
		return g.r.IntN(2) == 0
	case 2, 3:
		return g.str()
	case 4:
		return g.r.IntN(2000) - 1000
	case 5:
		return []int64{0, -1, 1e12, 4111111111111111, math.MaxInt64, math.MinInt64}[g.r.IntN(6)]
	case 6:
		return []float64{0, math.Copysign(0, -1), 1e21, 1e-7, 1.5, -2.25e-300, 5e-324, math.MaxFloat64,
			0.1, 123456.789, 1e20, 9.99e-7}[g.r.IntN(12)]
	case 7:
		if g.ordinary || g.stored {
			return canonNumbers[1+g.r.IntN(len(canonNumbers)-1)]
		}
		return canonNumbers[g.r.IntN(len(canonNumbers))]
	case 8, 9:
		return g.object(depth + 1)
	case 10, 11:
		a := make([]any, g.r.IntN(4))
		for i := range a {
			a[i] = g.value(depth + 1)
		}
		return a
	case 12:
		return []any{math.NaN(), math.Inf(1), math.Inf(-1), float32(0.1), float32(1e21), float32(1e-7)}[g.r.IntN(6)]
	case 13:
		loc := time.FixedZone("X", 5*3600+1800)
		return []time.Time{time.Date(2026, 12, 6, 5, 4, 3, 123456789, time.UTC), time.Date(1999, 1, 2, 3, 4, 5, 0, loc)}[g.r.IntN(2)]
	case 14:
		return []any{int8(-8), int16(300), int32(-70000), uint8(200), uint16(65535), uint32(1 << 31), uintptr(7),
			uint(math.MaxUint32), uint64(4111111111111111), uint64(math.MaxUint64)}[g.r.IntN(10)]
	case 15:
		return struct {
			A string
			B int     `json:"b"`
			C float64 `json:"password"`
		}{g.str(), g.r.IntN(100), 1e21}
	case 16:
		return map[string]int{g.key(): 1, g.key(): 2, "": 3}
	case 17:
		return []string{g.str(), g.str()}
	case 18:
		return json.RawMessage(`{"z": 1, "a": [1.0e2, "x\u2028"], "aa": {"b": null}}`)
	case 19:
		return []byte(g.str())
	case 20:
		return g.str() + "\x00"
	default:
		return &struct{ P *int }{}
	}
}

func (g *canonGen) object(depth int) map[string]any {
	m := make(map[string]any)
	for range g.r.IntN(7) {
		m[g.key()] = g.value(depth)
	}
	return m
}

// record returns a record with images (the after image sharing most of the before image's
// strings, as an update's do), a diff and metadata.
func (g *canonGen) record() *Record {
	r := &Record{Kind: KindUpdate, ResourceType: "things", ResourceID: "1", Tenant: Tenant{ID: "t1"}}
	if g.r.IntN(5) != 0 {
		r.Before = g.object(0)
	}
	if g.r.IntN(5) != 0 {
		r.After = make(map[string]any)
		for k, v := range r.Before {
			if g.r.IntN(4) != 0 {
				r.After[k] = v
			}
		}
		for range g.r.IntN(3) {
			r.After[g.key()] = g.value(1)
		}
	}
	if g.r.IntN(3) != 0 {
		r.Diff = make(map[string]Change)
		for range 1 + g.r.IntN(4) {
			r.Diff[g.key()] = Change{From: g.value(1), To: g.value(1)}
		}
	}
	if g.r.IntN(3) != 0 {
		r.Metadata = g.object(0)
	}
	r.normalize(time.Now())
	return r
}

// canonJSONCols are the JSON columns whose texts the encoder writes.
var canonJSONCols = []int{colBefore, colAfter, colDiff, colMetadata}

// checkCanon encodes recs in one batch with the jsonb texts written and checks each text against
// jsonbText of its document, the documents against those of an encoding without texts, and the
// chain fields against those parsed. It returns the number of documents whose text was given up.
func checkCanon(t *testing.T, red *Redactor, recs []*Record) (docs, gaveUp int) {
	t.Helper()
	with := newRowBatch(red, len(recs))
	with.canon = true
	without := newRowBatch(red, len(recs))
	for i, rec := range recs {
		var r1, r2 Record
		row, err := with.rowOf(rec, &r1)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		plain, err := without.rowOf(rec, &r2)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if r1.canon == nil {
			t.Fatalf("record %d carries no texts", i)
		}
		if r2.canon != nil {
			t.Fatalf("record %d carries texts from a batch that does not write them", i)
		}
		for _, col := range canonJSONCols {
			doc, _ := row[col].([]byte)
			p, _ := plain[col].([]byte)
			if (doc == nil) != (p == nil) {
				t.Fatalf("record %d column %s: document %s written with its text, %s without", i, Columns[col], doc, p)
			}
			if doc == nil {
				continue
			}
			docs++
			// A document with a text is stored as that text: jsonb's text of the JSON the batch
			// writes without texts. One without is that JSON.
			text := r1.canon.text(col, doc)
			if text == nil {
				gaveUp++
				if !bytes.Equal(doc, p) {
					t.Fatalf("record %d column %s: the document without a text\n%s\ndiffers from\n%s", i, Columns[col], doc, p)
				}
				continue
			}
			want, werr := jsonbText(nil, p)
			if werr != nil {
				t.Fatalf("record %d column %s: text %s for a document jsonb refuses (%v): %s", i, Columns[col], text, werr, p)
			}
			if !bytes.Equal(text, want) {
				t.Fatalf("record %d column %s of %s:\n got %s\nwant %s", i, Columns[col], p, text, want)
			}
			if !bytes.Equal(doc, text) {
				t.Fatalf("record %d column %s: the document %s is not its text %s", i, Columns[col], doc, text)
			}
		}
		got, err := prepareChainWith(row, r1.canon)
		want, werr := prepareChain(plain)
		if (err != nil) != (werr != nil) {
			t.Fatalf("record %d: chain fields with texts: %v, parsed: %v", i, err, werr)
		}
		if err == nil && !fieldsEqual(&got, &want) {
			t.Fatalf("record %d: the chain fields made with the texts differ from those parsed", i)
		}
		// The fields the Writer's encoding goroutine makes ahead are those, and the sink takes
		// them instead of making its own.
		with.prepareChain(row, &r1)
		if (r1.canon.fields != nil) != (werr == nil) {
			t.Fatalf("record %d: fields made ahead: %v, parsed: %v", i, r1.canon.fields != nil, werr)
		}
		if werr != nil {
			continue
		}
		if !fieldsEqual(r1.canon.fields, &want) {
			t.Fatalf("record %d: the chain fields made ahead differ from those parsed", i)
		}
		ahead, err := prepareChainRecs([][]any{row}, []*Record{&r1})
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !fieldsEqual(ahead[0], &want) || &ahead[0][3][0] != &r1.canon.fields[3][0] {
			t.Fatalf("record %d: the sink did not take the fields made ahead", i)
		}
		if other, err := prepareChainRecs([][]any{slices.Clone(row)}, []*Record{&r1}); err != nil || &other[0][3][0] == &r1.canon.fields[3][0] {
			t.Fatalf("record %d: the fields made ahead were taken for another row (%v)", i, err)
		}
	}
	return docs, gaveUp
}

func fieldsEqual(a, b *ChainFields) bool {
	for i := range a {
		if !bytes.Equal(a[i], b[i]) || (a[i] == nil) != (b[i] == nil) {
			return false
		}
	}
	return true
}

// TestCanonicalTextDifferential: for random records of every kind of value, the jsonb text the
// encoder writes for a document is jsonbText of the document, byte for byte, or none; the
// documents are those written without texts; give-ups are rare, and none for ordinary maps.
func TestCanonicalTextDifferential(t *testing.T) {
	red := NewRedactor(nil, nil)
	for _, ordinary := range []bool{true, false} {
		var docs, gaveUp int
		for seed := range uint64(300) {
			g := &canonGen{r: rand.New(rand.NewPCG(seed, 7)), ordinary: ordinary}
			recs := make([]*Record, 20)
			for i := range recs {
				recs[i] = g.record()
			}
			d, n := checkCanon(t, red, recs)
			docs, gaveUp = docs+d, gaveUp+n
		}
		t.Logf("ordinary %v: %d documents, %d texts given up", ordinary, docs, gaveUp)
		if docs < 1000 {
			t.Fatalf("only %d documents checked", docs)
		}
		if ordinary && gaveUp != 0 {
			t.Fatalf("%d of %d ordinary documents had their text given up", gaveUp, docs)
		}
		if gaveUp*20 > docs {
			t.Fatalf("%d of %d documents had their text given up", gaveUp, docs)
		}
	}
}

// TestCanonicalTextCases checks documents whose jsonb text differs from their JSON in each way:
// member order, separators, string escapes, numbers, the diff's members.
func TestCanonicalTextCases(t *testing.T) {
	red := NewRedactor(nil, nil)
	rec := &Record{
		Kind: KindUpdate, ResourceType: "things", ResourceID: "1",
		Before: map[string]any{"bb": 1, "a": []any{1.5, "x<y>&z", "\u2028"}, "ccc": map[string]any{"z": "\t", "yy": json.Number("1.50e1")}},
		After:  map[string]any{"bb": 2, "a": []any{1e21, 1e-7, math.Copysign(0, -1)}, "ccc": "k\"\\"},
		Diff:   map[string]Change{"bb": {From: 1, To: 2}, "password": {From: "x", To: nil}},
		Metadata: map[string]any{
			"n": json.Number("12.340e1"), "big": json.Number("1E+3"), "s": struct{ B, A int }{2, 1},
		},
	}
	rec.normalize(time.Now())
	want := map[int]string{
		colBefore:   `{"a": [1.5, "x<y>&z", "` + "\u2028" + `"], "bb": 1, "ccc": {"z": "\t", "yy": 15.0}}`,
		colAfter:    `{"a": [1000000000000000000000, 0.0000001, 0], "bb": 2, "ccc": "k\"\\"}`,
		colDiff:     `{"bb": {"to": 2, "from": 1}, "password": {"to": null, "from": "[REDACTED]"}}`,
		colMetadata: `{"n": 123.40, "s": {"A": 1, "B": 2}, "big": 1000}`,
	}
	b := newRowBatch(red, 1)
	b.canon = true
	var r Record
	row, err := b.rowOf(rec, &r)
	if err != nil {
		t.Fatal(err)
	}
	for col, w := range want {
		doc := row[col].([]byte)
		if got := r.canon.text(col, doc); string(got) != w {
			t.Errorf("column %s of %s:\n got %s\nwant %s", Columns[col], doc, got, w)
		}
	}
	// An object too large for the insertion sort, and one nested in it; its text outgrows the
	// batch's buffer after the row's first text was written there.
	big := make(map[string]any)
	for i := range 300 {
		big[strings.Repeat("k", i%9)+strconv.Itoa(i*7919%1000)] = map[string]any{strconv.Itoa(i): i, "x": "y"}
	}
	large := &Record{Kind: KindUpdate, ResourceType: "things", ResourceID: "1",
		Before: map[string]any{"bb": 1, "a": "x"}, Metadata: big}
	large.normalize(time.Now())
	// Nesting past the redactor's depth, in maps and in arrays.
	var deepMap any = "leaf"
	var deepArr any = 1.5
	for i := range redactMaxDepth + 3 {
		deepMap = map[string]any{strconv.Itoa(i % 3): deepMap, "b": i}
		deepArr = []any{deepArr, i}
	}
	deep := &Record{Kind: KindUpdate, ResourceType: "things", ResourceID: "1",
		After: map[string]any{"m": deepMap, "a": deepArr}}
	deep.normalize(time.Now())
	if docs, gaveUp := checkCanon(t, red, []*Record{rec, large, deep}); docs != 7 || gaveUp != 0 {
		t.Fatalf("%d documents, %d texts given up; want 7 and 0", docs, gaveUp)
	}
}

// TestCanonicalTextGiveUp: a number numeric cannot hold gives up the text of its document (the
// chain then parses it and rejects the row as PostgreSQL would), and only that document's.
func TestCanonicalTextGiveUp(t *testing.T) {
	b := newRowBatch(NewRedactor(nil, nil), 1)
	b.canon = true
	rec := &Record{Kind: KindUpdate, ResourceType: "t", ResourceID: "1",
		Before:   map[string]any{"n": json.Number("1e999999999999")},
		Metadata: map[string]any{"m": 1},
	}
	rec.normalize(time.Now())
	var r Record
	row, err := b.rowOf(rec, &r)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.canon.text(colBefore, row[colBefore].([]byte)); got != nil {
		t.Fatalf("text %s for a number numeric cannot hold", got)
	}
	if got := r.canon.text(colMetadata, row[colMetadata].([]byte)); string(got) != `{"m": 1}` {
		t.Fatalf("metadata text %q, want {\"m\": 1}", got)
	}
	if _, err := prepareChainWith(row, r.canon); err == nil {
		t.Fatal("the chain accepted a row PostgreSQL refuses")
	}
}

// TestCanonicalTextOnlyForItsDocument: a text stands for its column only while the row holds the
// document it was made from; a row whose document was replaced (as personal-value encryption
// replaces it) is parsed.
func TestCanonicalTextOnlyForItsDocument(t *testing.T) {
	b := newRowBatch(NewRedactor(nil, nil), 1)
	b.canon = true
	rec := &Record{Kind: KindUpdate, ResourceType: "t", ResourceID: "1", Metadata: map[string]any{"m": 1}}
	rec.normalize(time.Now())
	var r Record
	row, err := b.rowOf(rec, &r)
	if err != nil {
		t.Fatal(err)
	}
	// A wrong text in the record shows which fields come from it.
	text := r.canon.text(colMetadata, row[colMetadata].([]byte))
	if string(text) != `{"m": 1}` {
		t.Fatalf("metadata text %q", text)
	}
	// The document is stored as its text: made into one that parsing would change, the field
	// is still taken from it as it is.
	copy(text, `{ "m":1}`)
	f, err := prepareChainWith(row, r.canon)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(f[3+colMetadata]); got != `{ "m":1}` {
		t.Fatalf("metadata field %q: the carried text was not used", got)
	}
	row[colMetadata] = bytes.Clone(row[colMetadata].([]byte)) // equal bytes, another document
	if f, err = prepareChainWith(row, r.canon); err != nil {
		t.Fatal(err)
	}
	if got := string(f[3+colMetadata]); got != `{"m": 1}` {
		t.Fatalf("metadata field %q after the document was replaced, want it parsed", got)
	}
}

// FuzzCanonicalText: records built from a seed, with the fuzzer's string as keys and values.
func FuzzCanonicalText(f *testing.F) {
	for _, s := range canonStrings {
		f.Add(uint64(len(s)), s)
	}
	f.Add(uint64(1), "\u2029<>&\x1b")
	red := NewRedactor(nil, nil)
	f.Fuzz(func(t *testing.T, seed uint64, s string) {
		g := &canonGen{r: rand.New(rand.NewPCG(seed, 11)), extra: []string{s, s + s[:len(s)/2]}}
		recs := make([]*Record, 4)
		for i := range recs {
			recs[i] = g.record()
		}
		recs = append(recs, &Record{Kind: KindUpdate, ResourceType: "t", ResourceID: "1",
			Before: map[string]any{s: s, "k": s}, After: map[string]any{s: s, "k": s + "!"},
			Diff: map[string]Change{s: {From: s, To: json.Number(s)}}, Metadata: map[string]any{"n": json.Number(s)}})
		recs[len(recs)-1].normalize(time.Now())
		checkCanon(t, red, recs)
	})
}

// TestCanonicalChainedWriter: a chained Writer writes the texts while it encodes, with and
// without a spool, and the rows it stores are those Verify accepts, their hashes those
// PostgreSQL's jsonb text gives.
func TestCanonicalChainedWriter(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	for _, spool := range []bool{false, true} {
		name := map[bool]string{false: "memory", true: "spool"}[spool]
		t.Run(name, func(t *testing.T) {
			opts := WriterOptions{BatchSize: 50, FlushInterval: time.Hour}
			if spool {
				opts.Spool.Dir = t.TempDir()
			}
			w, err := OpenWriter(NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema}), opts)
			if err != nil {
				t.Fatal(err)
			}
			if !w.chainsRows() {
				t.Fatal("a Writer to a chained sink does not write the jsonb texts")
			}
			g := &canonGen{r: rand.New(rand.NewPCG(1, 2)), stored: true}
			const n = 200
			keys := []string{name + "_a", name + "_b"}
			recs := make([]*Record, n)
			for i := range recs {
				recs[i] = g.record()
				recs[i].Tenant.ID = keys[i%2]
			}
			// The records as the Writer hands them to the sink carry texts.
			probe := make([]*Record, len(recs))
			copy(probe, recs)
			if spool {
				for i, r := range recs {
					if probe[i], _, err = w.encodeOne(r); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				w.encode(probe)
			}
			carried := 0
			for _, r := range probe {
				if r.canon == nil {
					t.Fatal("an encoded record carries no texts")
				}
				for _, d := range r.canon.docs {
					if d != nil {
						carried++
					}
				}
			}
			if carried < n {
				t.Fatalf("%d texts carried by %d records", carried, n)
			}
			for _, r := range recs {
				if err := w.Enqueue(r); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				rep, err := Verify(ctx, db.Pool, k, VerifyOptions{Schema: db.Schema})
				if err != nil {
					t.Fatal(err)
				}
				if !rep.OK || rep.Rows != n/2 {
					var first VerifyProblem
					if len(rep.Problems) > 0 {
						first = rep.Problems[0]
					}
					t.Fatalf("tenant %s: verify read %d rows, want %d; %d problems, the first %+v", k, rep.Rows, n/2, len(rep.Problems), first)
				}
			}
		})
	}
	if got := db.Count(t); got != 2*200 {
		t.Fatalf("audit_logs has %d rows, want %d", got, 2*200)
	}
	verifyChains(t, db.Pool)
}
