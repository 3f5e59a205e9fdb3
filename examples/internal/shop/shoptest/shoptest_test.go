package shoptest

import "testing"

func TestParseCurl(t *testing.T) {
	req, err := ParseCurl(`curl -s -X POST 'http://h/c' -H 'Authorization: Bearer t' -H 'Content-Type: application/json' -d '{"name":"O'\''Brien"}'`)
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "POST" || req.URL.String() != "http://h/c" || req.Header.Get("Authorization") != "Bearer t" ||
		req.Header.Get("Content-Type") != "application/json" || req.ContentLength != int64(len(`{"name":"O'Brien"}`)) {
		t.Fatalf("parsed %s %s %v length %d", req.Method, req.URL, req.Header, req.ContentLength)
	}
	for _, bad := range []string{`curl -s 'http://h/a' 'http://h/b'`, `curl -s 'http://h/a' -X`, `curl -s 'http://h/a' -d`} {
		if _, err := ParseCurl(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
