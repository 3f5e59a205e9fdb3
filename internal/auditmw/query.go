package auditmw

import (
	"net/url"
	"strings"
)

// queryRoom is the number of query parameters whose values the State holds itself.
const queryRoom = 4

// queryFast reports whether parseQuery may parse a query of up to queryRoom parameters itself:
// net/url refuses queries with more parameters than GODEBUG urlmaxqueryparams allows, and a
// process that sets it that low keeps url.ParseQuery's answer for every query.
var queryFast = func() bool {
	_, err := url.ParseQuery(strings.Repeat("a&", queryRoom-1) + "a")
	return err == nil
}()

// parseQuery returns what url.ParseQuery returns for q (the pairs that parse; a malformed pair is
// left out), with the values of up to queryRoom parameters stored in the state rather than in a
// slice of their own each. Every value slice has a capacity of its length, so that appending to
// one never writes into another's values.
func (st *State) parseQuery(q string) url.Values {
	if !queryFast || strings.Count(q, "&") >= queryRoom {
		v, _ := url.ParseQuery(q)
		return v
	}
	m := make(url.Values)
	n := 0
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			continue
		}
		if v, err = url.QueryUnescape(v); err != nil {
			continue
		}
		if vs, ok := m[k]; ok {
			m[k] = append(vs, v) // a repeated key: its own slice, as url.ParseQuery makes
			continue
		}
		st.qvals[n] = v
		m[k] = st.qvals[n : n+1 : n+1]
		n++
	}
	return m
}
