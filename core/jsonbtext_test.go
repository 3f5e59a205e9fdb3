package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// jsonbEdgeCases are documents whose jsonb text is compared with PostgreSQL's; they also seed
// FuzzJSONBText.
var jsonbEdgeCases = []string{
	// objects: duplicate keys (last wins, also when spelled with escapes), order by length then bytes
	`{"b":1,"a":2,"aa":3,"a":4,"B":[1,2,{}],"c":[]}`,
	`{"a":1,"\u0061":2}`, `{"é":1,"z":2,"zz":3,"ä":4,"~":5}`, `{"":0,"a":{"":{}}}`,
	`{"b":{"y":1,"x":2,"y":3},"a":[{"d":1,"c":2}]}`, `{}`, `[]`, `[{}]`, `{"a":[]}`,
	`{"a":1e131072,"a":1}`, `{"a":0e-16384,"a":1}`, `{"a":"\u0000","a":1}`, `{"a":[1e1100000000],"a":1}`,
	` { "a" : [ 1 , 2 ] , "b" : { } } `, "\t\r\n[\n1\n]\r\n",
	// strings
	`"a\u001f\u007f\u0080/\u2028<\b\f\n\r\t\"\\\u00e9\ud83d\ude00"`, `"\u001F\u000B\u0001"`,
	`"\/\\\""`, `"raw é 😀 \u2028 < > &"`, "\"\u2028\u2029\x7f\"", `""`, `"\uD83D\uDE00"`, `"\uFFFF\uFFFE"`,
	`"\u0000"`, `"a\u0000b"`, `"\ud800"`, `"\udc00"`, `"\ud800\u0041"`, `"\ud800\ud800"`, `"\ud800x"`,
	`"\udbff\udfff"`, "\"\xff\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "{\"\xc3\":1}",
	// numbers
	`[1.50, 1e2, 1.5e1, 12.340e1, 1E-3, -0, -0.0, 1e-07, 0e-5, -0e5, 1E+2, 0.000]`,
	`123456789012345678901234567890.123456789012345678901234567890`, `-1.0e-0`, `1e+0000000000000002`,
	`0.1`, `-0.000001`, `1e21`, `1e-7`, `9007199254740993`, `18446744073709551615`, `-9223372036854775808`,
	`5e-324`, `1.7976931348623157e308`, `0.00012e4`, `12e-1`, `100e-2`, `0.0e5`,
	`1e131071`, `1e131072`, `9.9e131071`, `0.1e131072`, `0.00001e131076`, `0.00001e131077`,
	`0e131072`, `0e1073741822`, `0e1073741823`, `0e-1073741823`, `1e-16383`, `1e-16384`, `0e-16383`,
	`0e-16384`, `0.5e-16382`, `0.5e-16383`, `1e99999999999999999999999`, `1e-99999999999999999999999`,
	// literals, top-level scalars, invalid documents
	`true`, `false`, `null`, `[true,false,null]`, `{"a":{"b":[{"c":null}]}}`,
	``, ` `, `[`, `{"a"}`, `{"a":1,}`, `[1,]`, `01`, `1.`, `.5`, `-`, `1e`, `+1`, `tru`, `truex`, `nul`,
	`"abc`, `"\x"`, `"\u12"`, `NaN`, `Infinity`, `[1] 2`, `{1:2}`, "\"a\tb\"", "\x00",
}

// pgJSONBText asks PostgreSQL for doc's jsonb text; refused is set when PostgreSQL rejects doc.
func pgJSONBText(ctx context.Context, conn interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, doc string) (text string, refused error, err error) {
	err = conn.QueryRow(ctx, `SELECT $1::text::jsonb::text`, doc).Scan(&text)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return "", err, nil
	}
	return text, nil, err
}

func TestJSONBTextMatchesPostgreSQL(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	var enc string
	if err := db.Pool.QueryRow(ctx, `SHOW server_encoding`).Scan(&enc); err != nil || enc != "UTF8" {
		t.Fatalf("server_encoding %q, %v: jsonbText follows a UTF8 database", enc, err)
	}
	for _, doc := range jsonbEdgeCases {
		want, refused, err := pgJSONBText(ctx, db.Pool, doc)
		if err != nil {
			t.Fatal(err)
		}
		got, gerr := jsonbText(nil, []byte(doc))
		switch {
		case refused != nil && gerr == nil:
			t.Errorf("jsonbText(%.80q) = %.80q, PostgreSQL refuses it: %v", doc, got, refused)
		case refused == nil && gerr != nil:
			t.Errorf("jsonbText(%.80q): %v, PostgreSQL prints %.80q", doc, gerr, want)
		case string(got) != want:
			t.Errorf("jsonbText(%.80q)\n got %.200q\nwant %.200q", doc, got, want)
		}
	}
}

// TestJSONBTextKnownAnswers pins the rules in the code itself, so that a change in them shows without
// a database too.
func TestJSONBTextKnownAnswers(t *testing.T) {
	t.Parallel()
	for doc, want := range map[string]string{
		`{"b":1,"a":2,"aa":3,"a":4}`:                          `{"a": 4, "b": 1, "aa": 3}`,
		`[1.50,1e2,1.5e1,12.340e1,1E-3,-0,-0.0,1e-07,-12e-1]`: `[1.50, 100, 15, 123.40, 0.001, 0, 0.0, 0.0000001, -1.2]`,
		`"\u001F\/\u00e9\ud83d\ude00\n"`:                      `"\u001f/é😀\n"`,
		` [ {} , [ ] , true , null ] `:                        `[{}, [], true, null]`,
	} {
		got, err := jsonbText(nil, []byte(doc))
		if err != nil || string(got) != want {
			t.Errorf("jsonbText(%q) = %q, %v; want %q", doc, got, err, want)
		}
	}
	for _, doc := range []string{`"\u0000"`, `"\udc00"`, `1e131072`, `1e-16384`, "\"\xff\"", `[1,]`} {
		if got, err := jsonbText(nil, []byte(doc)); err == nil {
			t.Errorf("jsonbText(%q) = %q, want an error", doc, got)
		}
	}
}

func TestJSONBTextAppends(t *testing.T) {
	t.Parallel()
	dst := []byte("prefix:")
	got, err := jsonbText(dst, []byte(`{"b":[1e1],"a":"x"}`))
	if err != nil || string(got) != `prefix:{"a": "x", "b": [10]}` {
		t.Fatalf("got %q, %v", got, err)
	}
	got, err = jsonbText(dst, []byte(`{"a":"\u0000"}`))
	if err == nil || string(got) != "prefix:" {
		t.Fatalf("on error got %q, %v; want dst unchanged and an error", got, err)
	}
	if !errors.Is(err, errJSONBNulEscape) {
		t.Fatalf("error %v does not wrap errJSONBNulEscape", err)
	}
}

func TestJSONBTextDepth(t *testing.T) {
	t.Parallel()
	for _, depth := range []int{jsonbMaxDepth, jsonbMaxDepth + 1} {
		doc := strings.Repeat(`{"a":[`, depth/2) + strings.Repeat("[", depth%2) + "1" +
			strings.Repeat("]", depth%2) + strings.Repeat(`]}`, depth/2)
		got, err := jsonbText(nil, []byte(doc))
		if valid := json.Valid([]byte(doc)); valid != (err == nil) {
			t.Fatalf("depth %d: encoding/json valid %v, jsonbText error %v", depth, valid, err)
		}
		if err == nil && !strings.HasPrefix(string(got), `{"a": [{"a": [`) {
			t.Fatalf("depth %d: %.40q", depth, got)
		}
	}
}

// randomJSONBDoc builds a random document the way callers make them: json.Marshal of a map tree.
func randomJSONBDoc(r *rand.Rand, depth int) any {
	n := r.IntN(10)
	if depth == 0 {
		m := make(map[string]any, n+1)
		for range n + 1 {
			m[randomJSONBString(r, 6)] = randomJSONBValue(r, depth+1)
		}
		return m
	}
	return randomJSONBValue(r, depth)
}

func randomJSONBValue(r *rand.Rand, depth int) any {
	k := r.IntN(12)
	if depth > 4 && k >= 9 {
		k = r.IntN(9)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return randomJSONBString(r, 20)
	case 3:
		return r.Int64() >> r.IntN(64)
	case 4:
		return r.Uint64()
	case 5:
		f := r.Float64() * math.Pow10(r.IntN(60)-30)
		if r.IntN(2) == 0 {
			f = -f
		}
		return f
	case 6:
		return []float64{1e21, 1e20, 1e-7, 1e-6, 0.1, 0.2 + 0.1, 1 << 53, -0.0, math.MaxFloat64, 5e-324}[r.IntN(10)]
	case 7:
		return json.Number(fmt.Sprintf("%d.%0*d", r.Int64(), r.IntN(8), r.IntN(1000)))
	case 8:
		return json.RawMessage(fmt.Sprintf("%de%d", r.IntN(1000)-500, r.IntN(80)-40))
	case 9:
		a := make([]any, r.IntN(5))
		for i := range a {
			a[i] = randomJSONBValue(r, depth+1)
		}
		return a
	default:
		m := make(map[string]any)
		for range r.IntN(6) {
			m[randomJSONBString(r, 4)] = randomJSONBValue(r, depth+1)
		}
		return m
	}
}

var jsonbRunes = []rune("aAbz09 _-\"\\/<>&\b\f\n\r\t\x01\x1f\x7féäß€\u2028\u2029\uFFFD日本😀𝄞")

func randomJSONBString(r *rand.Rand, maxLen int) string {
	var b strings.Builder
	for range r.IntN(maxLen + 1) {
		b.WriteRune(jsonbRunes[r.IntN(len(jsonbRunes))])
	}
	return b.String()
}

// TestJSONBTextRandomDocs compares 2,000 json.Marshal documents with PostgreSQL in one query.
func TestJSONBTextRandomDocs(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	r := rand.New(rand.NewPCG(20261205, 1))
	docs := make([]string, 2000)
	for i := range docs {
		b, err := json.Marshal(randomJSONBDoc(r, i%3))
		if err != nil {
			t.Fatal(err)
		}
		docs[i] = string(b)
	}
	rows, err := db.Pool.Query(context.Background(),
		`SELECT u.t::jsonb::text FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY u.i`, docs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != len(docs) {
		t.Fatalf("PostgreSQL returned %d rows for %d documents", len(want), len(docs))
	}
	var buf []byte
	for i, doc := range docs {
		buf, err = jsonbText(buf[:0], []byte(doc))
		if err != nil {
			t.Errorf("doc %d %.200q: %v", i, doc, err)
			continue
		}
		if string(buf) != want[i] {
			t.Errorf("doc %d %.200q\n got %.300q\nwant %.300q", i, doc, buf, want[i])
		}
	}
}

// jsonbBenchDoc is an ORM image of about 1 kB, like the before/after documents of an update.
const jsonbBenchDoc = `{"id":918273,"uuid":"5f0c6c0e-2a4b-4f7e-9d55-0b1c3f8e7a21","email":"ana.souza@example.com",` +
	`"name":"Ana Souza","display_name":"Ana S.","role":"admin","active":true,"verified":true,"locale":"pt-BR",` +
	`"timezone":"America/Sao_Paulo","balance":1234.50,"credit_limit":10000,"score":0.875,"login_count":382,` +
	`"failed_logins":0,"last_ip":"203.0.113.17","created_at":"2025-03-14T09:26:53.589793Z",` +
	`"updated_at":"2026-12-05T21:40:12.123456Z","deleted_at":null,"tags":["beta","priority","emea"],` +
	`"address":{"street":"Rua das Flores, 123","city":"S\u00e3o Paulo","zip":"01234-567","country":"BR",` +
	`"geo":{"lat":-23.55052,"lng":-46.633308}},"preferences":{"theme":"dark","newsletter":false,` +
	`"notifications":{"email":true,"sms":false,"push":true},"page_size":50},"org_id":42,"team_ids":[7,19,23],` +
	`"bio":"Engineer \"on call\"\nLikes: go, postgres & <html>","avatar_url":"https:\/\/cdn.example.com\/a\/918273.png",` +
	`"plan":"enterprise","mfa_enabled":true,"api_quota":1e6,"discount":12.5e-2,"version":17}`

func BenchmarkJSONBText(b *testing.B) {
	doc := []byte(jsonbBenchDoc)
	buf, err := jsonbText(nil, doc)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = jsonbText(buf[:0], doc)
	}
}
