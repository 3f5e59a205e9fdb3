package core

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The fused encoder must give the bytes json.Marshal gives for the redacted copy Redactor.Map and
// Redactor.Diff build: the same bytes, not merely the same value, since both sort keys bytewise.

// encodeWant is what the rows stored before the fused encoder: json.Marshal of the redacted copy.
func encodeWant(t testing.TB, r *Redactor, m map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(r.Map(m))
	if err != nil {
		t.Fatalf("json.Marshal of the redacted copy: %v", err)
	}
	return b
}

func encodeWantDiff(t testing.TB, r *Redactor, d map[string]Change) []byte {
	t.Helper()
	b, err := json.Marshal(r.Diff(d))
	if err != nil {
		t.Fatalf("json.Marshal of the redacted diff: %v", err)
	}
	return b
}

// encodeTries is how often the reference is recomputed before a difference counts. Keys that
// sanitise to the same key ("k\x00" and "k") collide in the redacted copy, and which value wins
// follows Go's map order: the reference then has several right answers, and the fused encoding
// must be one of them.
const encodeTries = 200

func checkEncodeMap(t testing.TB, r *Redactor, m map[string]any) {
	t.Helper()
	got := r.appendRedactedMap([]byte("prefix"), m)
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatalf("fused encoding lost the bytes before it: %s", got)
	}
	got = got[len("prefix"):]
	var want []byte
	for range encodeTries {
		if want = encodeWant(t, r, m); bytes.Equal(got, want) {
			return
		}
	}
	t.Fatalf("fused encoding differs from json.Marshal(Redactor.Map(m))\n got: %s\nwant: %s", got, want)
}

func checkEncodeDiff(t testing.TB, r *Redactor, d map[string]Change) {
	t.Helper()
	got := r.appendRedactedDiff(nil, d)
	var want []byte
	for range encodeTries {
		if want = encodeWantDiff(t, r, d); bytes.Equal(got, want) {
			return
		}
	}
	t.Fatalf("fused encoding differs from json.Marshal(Redactor.Diff(d))\n got: %s\nwant: %s", got, want)
}

// encodeSample holds every kind of value the encoder handles itself or hands to the slow path.
func encodeSample() map[string]any {
	deep := map[string]any{"leaf": "x"}
	for range 70 {
		deep = map[string]any{"d": deep, "l": []any{1}}
	}
	type inner struct {
		Password string `json:"password"`
		Name     string `json:"name"`
		N        float64
	}
	return map[string]any{
		"id": 42, "name": "Customer <b>&</b> \u2028 \u2029 \x7f", "email": "c1@example.com",
		"nil": nil, "t": true, "f": false,
		"i8": int8(-8), "i16": int16(-16), "i32": int32(-32), "u8": uint8(8), "u16": uint16(16),
		"u32": uint32(32), "uptr": uintptr(7), "int": -5, "i64": int64(math.MinInt64),
		"u": uint(math.MaxUint64), "u64": uint64(4111111111111111), "card_int": 4111111111111111,
		"big": int64(1e15), "f64": 3.14, "tiny": 1e-7, "huge": 1e21, "f32": float32(0.1),
		"f32e": float32(1e-7), "neg0": math.Copysign(0, -1), "nan": math.NaN(), "inf": math.Inf(1),
		"ninf": math.Inf(-1), "f32nan": float32(math.NaN()),
		"num": json.Number("12.50"), "numcard": json.Number("4111111111111111"), "numbad": json.Number("1e"),
		"numempty": json.Number(""),
		"time":     time.Date(2026, 11, 24, 10, 5, 0, 123456789, time.FixedZone("x", 3600)),
		"time0":    time.Time{}, "timebig": time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		"timeoff":  time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("y", 25*3600)),
		"password": "hunter2", "token": nil, "apiKey": map[string]any{"a": 1},
		"ctrl": "a\x00b\x01\b\f\n\r\t\"\\/", "bad": "a\xffb\xc3", "emoji": "😀 ünïcode",
		"nested": map[string]any{"secret": "s", "list": []any{"a", map[string]any{"cvv": 123}, nil, []any{}}},
		"empty":  map[string]any{}, "nilmap": map[string]any(nil), "nilslice": []any(nil),
		"raw": json.RawMessage(`{"token":"abc","ok":1}`), "bytes": []byte(`[{"apikey":"x"}]`),
		"binary": []byte{0xff, 0x00}, "strmap": map[string]string{"cookie": "c", "ok": "fine"},
		"strs": []string{`{"ssn":"1"}`, "token=abc"}, "maps": []map[string]any{{"privateKey": "k"}},
		"values": map[string][]string{"client_secret": {"a", "b"}},
		"struct": inner{"p", "n", 1.5}, "ptr": &inner{Name: "x"}, "fn": func() {},
		"json_in_string": `{"secret":"x","inner":"{\"cvv\":\"123\"}"}`,
		"url":            "https://user:pw@example.com/p?access_token=t&x=1#id_token=y",
		"note":           "login failed: password=hunter2, retry", "bearer": "sent bearer abc.def",
		"jwt":        "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.c2lnbmF0dXJlc2lnbmF0dXJl",
		"env":        []any{map[string]any{"name": "DB_PASSWORD", "value": "v"}},
		"env2":       map[string]any{"name": "DB_PASSWORD", "value": "v", "data": nil},
		"deep":       deep,
		"bad\xffkey": 1, "nul\x00key": 2, "ghp_" + strings.Repeat("a", 36): "token key",
		"[REDACTED KEY 1]": "taken",
		"card":             "4111 1111 1111 1111", "notes": strings.Repeat("n", 200),
	}
}

func TestEncodeMatchesMarshal(t *testing.T) {
	r := NewRedactor([]string{"plan"}, []string{"token_type"})
	m := encodeSample()
	checkEncodeMap(t, r, m)
	checkEncodeMap(t, nil, m)
	checkEncodeMap(t, r, nil)
	checkEncodeMap(t, r, map[string]any{})
	checkEncodeMap(t, r, map[string]any{"plan": "x", "token_type": "bearer", "Plan": nil})
	// A map whose keys are all clean takes the fast path all the way down.
	checkEncodeMap(t, r, map[string]any{"a": map[string]any{"b": []any{1.5, "c", nil}}})

	d := map[string]Change{
		"seats": {From: 1, To: 2}, "password": {From: "a", To: nil}, "notes": {From: m, To: "x"},
		"bad\xff": {From: 1, To: 2}, "card": {From: 4111111111111111, To: math.NaN()},
	}
	checkEncodeDiff(t, r, d)
	delete(d, "bad\xff")
	checkEncodeDiff(t, r, d)
	checkEncodeDiff(t, r, nil)
	checkEncodeDiff(t, r, map[string]Change{})
}

// TestEncodeFloatsLikeEncodingJSON checks the float form against encoding/json, and that the
// values encoding/json refuses (NaN, infinities) are the ones the redactor spells out first.
func TestEncodeFloatsLikeEncodingJSON(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 0.1, 1e-6, 9.99e-7, 1e-7, 123456789, 1e20, 1e21, 1.5e300,
		5e-324, math.MaxFloat64, -1e-10, 1.0 / 3} {
		want, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONFloat(nil, f, 64); !bytes.Equal(got, want) {
			t.Errorf("%v: got %s, want %s", f, got, want)
		}
		if math.Abs(f) > math.MaxFloat32 {
			continue
		}
		want32, err := json.Marshal(float32(f))
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONFloat(nil, float64(float32(f)), 32); !bytes.Equal(got, want32) {
			t.Errorf("float32(%v): got %s, want %s", f, got, want32)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := json.Marshal(f); err == nil {
			t.Fatalf("encoding/json encoded %v", f)
		}
		got := NewRedactor(nil, nil).appendRedactedMap(nil, map[string]any{"f": f})
		want, _ := json.Marshal(map[string]any{"f": redactFloat(f, f)})
		if !bytes.Equal(got, want) {
			t.Errorf("%v: got %s, want %s", f, got, want)
		}
	}
}

func TestEncodeStringsLikeEncodingJSON(t *testing.T) {
	var all strings.Builder
	for c := range 0x80 {
		all.WriteByte(byte(c))
	}
	for _, s := range []string{"", all.String(), "\u2028\u2029\u2027", "\xff\xfe", "a\xc3", "\xed\xa0\x80",
		"😀", "<script>&amp;</script>", strings.Repeat("é", 100)} {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONStr(nil, s); !bytes.Equal(got, want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	}
}

// FuzzEncode compares the fused encoder with json.Marshal of the redacted copy on documents
// decoded from the input (with json.Number and with float64 numbers), on the input as a string,
// a key, bytes, json.RawMessage and json.Number, and on typed values derived from the numbers.
func FuzzEncode(f *testing.F) {
	f.Add([]byte(`{"a":1,"password":"x","n":{"token":[1,2]},"s":"<&>"}`), "plain", 1.5, int64(3))
	f.Add([]byte(`[{"name":"DB_PASSWORD","value":"v"}]`), "a\xffb", math.Inf(1), int64(4111111111111111))
	f.Add([]byte(`{"x":"eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.c2lnbmF0dXJl","y":1e400}`), "password=hunter2", 1e-7, int64(-1))
	f.Add([]byte(`"https://u:p@h/x?token=1"`), "\u2028", math.NaN(), int64(1e12))
	f.Add([]byte(`{"k\u0000":1,"k":2}`), "ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0.0, int64(0))
	r := NewRedactor(nil, nil)
	f.Fuzz(func(t *testing.T, data []byte, s string, fl float64, n int64) {
		var viaNumber, viaFloat any
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if dec.Decode(&viaNumber) != nil {
			viaNumber = string(data)
		}
		if json.Unmarshal(data, &viaFloat) != nil {
			viaFloat = nil
		}
		m := map[string]any{
			"doc": viaNumber, "docf": viaFloat, "s": s, s: viaNumber, "bytes": data,
			"raw": json.RawMessage(data), "number": json.Number(s), "f": fl, "f32": float32(fl),
			"n": n, "u": uint64(n), "i32": int32(n), "t": time.Unix(n, n).UTC(),
			"list": []any{viaNumber, s, fl, n, nil}, "strs": []string{s},
		}
		checkEncodeMap(t, r, m)
		if doc, ok := viaNumber.(map[string]any); ok {
			checkEncodeMap(t, r, doc)
			d := make(map[string]Change, len(doc))
			for k, v := range doc {
				d[k] = Change{From: v, To: s}
			}
			checkEncodeDiff(t, r, d)
		}
		checkEncodeDiff(t, r, map[string]Change{s: {From: fl, To: viaFloat}, "x": {From: n}})
		// The images of an update, the after image sharing strings with the before image.
		if doc, ok := viaNumber.(map[string]any); ok {
			after := map[string]any{"s": s}
			for k, v := range doc {
				after[k] = v
				if _, isStr := v.(string); isStr && len(k)%2 == 0 {
					after[k] = s
				}
			}
			rec := &Record{Kind: KindUpdate, Before: doc, After: after}
			rec.normalize(time.Now())
			got, err := newRowBatch(r, 1).row(rec)
			if err != nil {
				t.Fatal(err)
			}
			for range encodeTries {
				want, err := rowValues(r.Record(rec))
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Equal(got[colBefore].([]byte), want[colBefore].([]byte)) &&
					bytes.Equal(got[colAfter].([]byte), want[colAfter].([]byte)) {
					return
				}
			}
			t.Fatalf("the images differ from json.Marshal of the redacted copies: %s %s", got[colBefore], got[colAfter])
		}
	})
}

// TestJSONPlain8 checks the eight-byte test of appendJSONStr against the byte table: every value
// at every position among plain bytes, and random words.
func TestJSONPlain8(t *testing.T) {
	want := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] >= utf8.RuneSelf || !jsonPlain[s[i]] {
				return false
			}
		}
		return true
	}
	for _, fill := range []byte{'a', ' ', '~', 0x7f, '!', '=', '?', ']'} {
		for pos := range 8 {
			for c := range 256 {
				b := bytes.Repeat([]byte{fill}, 8)
				b[pos] = byte(c)
				if got := jsonPlain8(string(b)); got != want(string(b)) {
					t.Fatalf("%q: %v, want %v", b, got, !got)
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var b [8]byte
	for range 1_000_000 {
		for i := range b {
			b[i] = byte(rng.IntN(256))
			if rng.IntN(4) != 0 {
				b[i] = byte(0x20 + rng.IntN(0x60))
			}
		}
		if got := jsonPlain8(string(b[:])); got != want(string(b[:])) {
			t.Fatalf("%q: %v, want %v", b, got, !got)
		}
	}
}

// shapeMaps returns n maps whose keys repeat from map to map (the images of one table, objects
// nested under them at several depths, name/value pairs naming a secret or not, sensitive keys),
// with values that differ, for the encoder's memory of key shapes (keyShape).
func shapeMaps(rng *rand.Rand, n int) []map[string]any {
	names := []string{"DB_PASSWORD", "color", "api_key", "region", "CLIENT_SECRET"}
	pair := func() map[string]any {
		return map[string]any{"name": names[rng.IntN(len(names))], "value": rng.IntN(100), "id": "x"}
	}
	ab := func(v any) map[string]any { return map[string]any{"a": v, "b": rng.IntN(9)} }
	out := make([]map[string]any, n)
	for i := range out {
		switch rng.IntN(7) {
		case 0:
			out[i] = pair()
		case 1: // the same keys at depths 0, 1 and 2
			out[i] = ab(ab(ab("leaf")))
		case 2: // more new shapes inside one object than the encoder remembers, then a
			// sensitive key after them
			out[i] = map[string]any{"children": []any{ab(1), pair(), map[string]any{"c": 1, "d": 2},
				map[string]any{"e": 1, "f": 2}, map[string]any{"g": 1, "h": 2}, map[string]any{"i": 1, "j": 2}},
				"password": "hunter2", "plan": "gold", "seats": rng.IntN(50)}
		case 3:
			out[i] = map[string]any{"id": i, "email": "c@example.com", "notes": "token=abc" + strings.Repeat("n", rng.IntN(3)),
				"plan": "gold", "password": nil}
		case 4: // the keys of case 3 but one
			out[i] = map[string]any{"id": i, "email": "c@example.com", "notes": "x", "plan": "gold", "passwrd": 1}
		case 5: // a key the slow path renames
			out[i] = map[string]any{"id": i, "bad\xffkey": 1, "plan": "x"}
		default: // a key read as JSON naming a secret, too deep to be read at depth 63 and read at 1
			secretKey := func() map[string]any { return map[string]any{`{"password":"x"}`: 1, "z": rng.IntN(9)} }
			deep := secretKey()
			for range redactMaxDepth - 2 {
				deep = map[string]any{"d": deep, "z": 1}
			}
			out[i] = map[string]any{"a": deep, "b": secretKey()}
		}
	}
	return out
}

// TestEncodeShapesRemembered checks the fused encoding of objects whose keys the encoder has
// seen before against json.Marshal of the redacted copy: through one rowBatch, which remembers
// shapes from record to record, and through the pooled encoders with two Redactors that judge a
// key differently.
func TestEncodeShapesRemembered(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 13))
	r1, r2 := NewRedactor([]string{"plan"}, nil), NewRedactor(nil, nil)
	maps := shapeMaps(rng, 3000)
	for i, m := range maps {
		r := r1
		if i%3 == 0 {
			r = r2
		}
		checkEncodeMap(t, r, map[string]any{"list": []any{m, m}, "m": m})
	}
	for _, red := range []*Redactor{r1, r2} {
		b := newRowBatch(red, 500)
		for i := 1; i < len(maps); i++ {
			rec := &Record{Kind: KindUpdate, Before: maps[i-1], After: maps[i], Metadata: maps[(i*7)%len(maps)]}
			rec.normalize(time.Now())
			checkRowDocs(t, red, b, rec, i)
		}
	}
}
