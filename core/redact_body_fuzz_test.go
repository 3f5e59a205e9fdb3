package core_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/plant"
)

// bsCheck stores body as the request and response body of a record and fails when a piece of a
// planted secret is in what would be stored: the record, the stored body documents, and the text
// they hold once decoded (a JSON-escaped secret is still a secret).
func bsCheck(t *testing.T, r *core.Redactor, what string, body *core.Body, secrets map[string]string) {
	t.Helper()
	rec := r.Record(&core.Record{Kind: core.KindHTTP, Action: "http.request", RequestBody: body, ResponseBody: body})
	rest := *rec
	rest.RequestBody, rest.ResponseBody = nil, nil
	all, err := json.Marshal(rest)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	stored := string(all)
	for _, b := range []*core.Body{rec.RequestBody, rec.ResponseBody} {
		if !json.Valid(b.Data) {
			t.Fatalf("%s: stored body is not JSON: %s", what, b.Data)
		}
		var decoded any
		_ = json.Unmarshal(b.Data, &decoded)
		stored += string(b.Data) + fmt.Sprint(decoded)
	}
	if leaks := plant.Leaks(stored, secrets); len(leaks) > 0 {
		t.Errorf("%s: leaked %s\nstored: %s", what, strings.Join(leaks, ", "), rec.RequestBody.Data)
	}
}

// bsAllSecrets are the secrets of every shape for tag.
func bsAllSecrets(tag string) map[string]string {
	all := map[string]string{}
	for _, sh := range plant.Shapes {
		for s, n := range plant.Secrets(sh.Name, tag) {
			all[s] = n
		}
	}
	return all
}

// TestBodyPlantedSecrets plants secrets (values under sensitive keys, bearer tokens, key=value
// pairs, URL passwords, lists and blocks under sensitive keys, JWTs, card numbers, cloud keys,
// PEM blocks, name/value pairs, .netrc and .pgpass lines) in every body shape, declared with every
// kind of content type (right, with a charset, missing, wrong), whole and truncated every 7
// bytes, and checks that none reaches a stored record.
func TestBodyPlantedSecrets(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	const tag = "b"
	for _, sh := range plant.Shapes {
		data := sh.Render(tag, "plain note: nothing secret here", false)
		secrets := plant.Secrets(sh.Name, tag)
		for _, ct := range plant.ContentTypes(sh.ContentType) {
			t.Run(sh.Name+"/"+ct, func(t *testing.T) {
				bsCheck(t, r, "whole", &core.Body{ContentType: ct, Data: []byte(data), Size: int64(len(data))}, secrets)
				for cut := 1; cut < len(data); cut += 7 {
					bsCheck(t, r, fmt.Sprintf("cut at %d", cut),
						&core.Body{ContentType: ct, Data: []byte(data[:cut]), Truncated: true, Size: int64(len(data))}, secrets)
				}
			})
		}
	}
}

// FuzzBodySecrets varies the shape, the declared type, the cut and a neutral field (escaped for
// the format, or inserted raw so that it may break the format): no planted secret may be stored.
// The seeds run with go test; run longer with
//
//	go test ./core/ -run '^$' -fuzz FuzzBodySecrets -fuzztime 60s
func FuzzBodySecrets(f *testing.F) {
	for i := range plant.Shapes {
		for j := range 7 {
			f.Add(uint8(i), uint8(j), uint16(0), "a note", false)
		}
		f.Add(uint8(i), uint8(0), uint16(97), `he said "hi" & left <b>`, true)
		f.Add(uint8(i), uint8(2), uint16(211), "line\n  indented: x\n- item", true)
		f.Add(uint8(i), uint8(4), uint16(33), `{"a":[1,`, true)
		f.Add(uint8(i), uint8(3), uint16(150), "]]><!-- x='", true)
		f.Add(uint8(i), uint8(1), uint16(400), "--bsB0undary\r\n", true)
	}
	r := core.NewRedactor(nil, nil)
	const tag = "f"
	all := bsAllSecrets(tag)
	f.Fuzz(func(t *testing.T, shape, ctIndex uint8, cut uint16, noise string, raw bool) {
		if plant.Contains(noise, all) {
			t.Skip()
		}
		sh := plant.Shapes[int(shape)%len(plant.Shapes)]
		cts := plant.ContentTypes(sh.ContentType)
		ct := cts[int(ctIndex)%len(cts)]
		data := sh.Render(tag, noise, raw)
		body := &core.Body{ContentType: ct, Data: []byte(data), Size: int64(len(data))}
		if c := int(cut); c > 0 && c < len(data) {
			body.Data, body.Truncated = body.Data[:c], true
		}
		bsCheck(t, r, fmt.Sprintf("%s as %q (cut %d, raw %v, noise %q)", sh.Name, ct, cut, raw, noise), body,
			plant.Secrets(sh.Name, tag))
	})
}
