package store

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
)

// FuzzParseFilter: any query string is either refused with a *ParamError or parsed into a filter
// that validates, re-encodes to parameters that parse to the same filter, and builds SQL.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"", "from=2026-01-01&to=2026-01-02", "kind=http,delete&severity=error,info", "ip=10.0.0.0/8",
		"ip=::ffff:10.0.0.1", "ip=::ffff:10.0.0.0/104", "status_min=200&status_max=299", "q=user.delete",
		"action_prefix=invoice.&actor_email=A@B.C", "from=2026-01-01T00:00:00.1234567%2B01:00",
		"actor_type=service&resource_type=x&resource_id=y&request_id=z", "kind=", "q=%ff%fe", "from=9999-12-31",
		"changed=email", "changed=phone,%20email,email&resource_type=customers", "changed=,", "changed=e%20mail",
		"changed=Stra%C3%9Fe,$id,billing.address,a:b", "changed=a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u",
	} {
		f.Add(s)
	}
	st := &Store{schema: "s", searchFn: `"s"."audit_search_document"`}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		flt, err := ParseFilter(v)
		if err != nil {
			var pe *ParamError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidFilter) {
				t.Fatalf("%q: error %v is not a *ParamError", raw, err)
			}
			return
		}
		if err := flt.Validate(); err != nil {
			t.Fatalf("%q: parsed filter does not validate: %v", raw, err)
		}
		again, err := ParseFilter(flt.Values())
		if err != nil {
			t.Fatalf("%q: re-encoded %v does not parse: %v", raw, flt.Values(), err)
		}
		if again.canonical() != flt.canonical() {
			t.Fatalf("%q: round trip changed the filter: %q vs %q", raw, again.canonical(), flt.canonical())
		}
		var b sqlBuilder
		st.where(&b, TenantScope("t"), flt)
		if len(b.args) > 20 {
			t.Fatalf("%q: %d arguments", raw, len(b.args))
		}
	})
}

// FuzzCursor: no text decodes to a cursor unless it is exactly what the store issued for the same
// query, and decoding never panics.
func FuzzCursor(f *testing.F) {
	st := &Store{opts: Options{CursorKey: []byte("0123456789abcdef0123456789abcdef")}}
	binding := cursorBinding(TenantScope("acme"), NewestFirst, Filter{Action: "a"})
	valid := st.encodeCursor(position{at: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), id: uuid.MustParse("01900000-0000-7000-8000-000000000001")}, binding)
	f.Add(valid)
	f.Add("")
	f.Add("AAAA")
	f.Add(valid[:len(valid)-1] + "A")
	f.Add(valid + "=")
	f.Fuzz(func(t *testing.T, text string) {
		p, err := st.decodeCursor(text, binding)
		if text == valid {
			if err != nil {
				t.Fatalf("the issued cursor is refused: %v", err)
			}
			return
		}
		if err == nil {
			// Only a cursor with a valid MAC decodes, which means the fuzzer forged HMAC-SHA256.
			if st.encodeCursor(p, binding) != text {
				t.Fatalf("%q decoded to %+v without being issued", text, p)
			}
			return
		}
		if !errors.Is(err, ErrInvalidCursor) {
			t.Fatalf("%q: error %v", text, err)
		}
		if _, err := st.decodeCursor(text, cursorBinding(TenantScope("other"), NewestFirst, Filter{Action: "a"})); err == nil {
			t.Fatalf("%q decodes for another tenant", text)
		}
	})
}
