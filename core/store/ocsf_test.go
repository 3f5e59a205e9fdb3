package store_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// ocsfSchema is the part of the pinned OCSF schema (testdata/ocsf/<version>) that the
// events of format=ocsf use, read from the schema's own definition files.
type ocsfSchema struct {
	dir        string
	dict       map[string]map[string]any // dictionary attributes
	types      map[string]map[string]any // dictionary types
	categories map[string]int
	classes    map[string]*ocsfClass // by class file
	objects    map[string]*ocsfClass // by object name
}

// ocsfClass is a resolved event class or object: its attributes after extends and includes.
type ocsfClass struct {
	name, category string
	uid            int
	attrs          map[string]map[string]any
	atLeastOne     []string
}

// ocsfClassFiles maps the class names used by extends to their files.
var ocsfClassFiles = map[string]string{
	"base_event":        "events/base_event.json",
	"application":       "events/application/application.json",
	"api_activity":      "events/application/api.json",
	"iam":               "events/iam/iam.json",
	"entity_management": "events/iam/entity_management.json",
}

func ocsfReadJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func loadOCSFSchema(t *testing.T, version string) *ocsfSchema {
	t.Helper()
	s := &ocsfSchema{dir: filepath.Join("testdata", "ocsf", version), classes: map[string]*ocsfClass{}, objects: map[string]*ocsfClass{},
		dict: map[string]map[string]any{}, types: map[string]map[string]any{}, categories: map[string]int{}}
	if v := ocsfReadJSON(t, filepath.Join(s.dir, "version.json"))["version"]; v != version {
		t.Fatalf("schema copy is version %v, want %s", v, version)
	}
	d := ocsfReadJSON(t, filepath.Join(s.dir, "dictionary.json"))
	for k, v := range d["attributes"].(map[string]any) {
		s.dict[k] = v.(map[string]any)
	}
	for k, v := range d["types"].(map[string]any)["attributes"].(map[string]any) {
		s.types[k] = v.(map[string]any)
	}
	for k, v := range ocsfReadJSON(t, filepath.Join(s.dir, "categories.json"))["attributes"].(map[string]any) {
		s.categories[k] = int(v.(map[string]any)["uid"].(float64))
	}
	return s
}

// resolve reads a class or object file, merging what it extends and includes (profiles are not
// applied, so their attributes are left out).
func (s *ocsfSchema) resolve(t *testing.T, file string, object bool) *ocsfClass {
	t.Helper()
	def := ocsfReadJSON(t, filepath.Join(s.dir, file))
	c := &ocsfClass{attrs: map[string]map[string]any{}}
	if ext, ok := def["extends"].(string); ok {
		var parent *ocsfClass
		if object {
			parent = s.object(t, ext)
		} else {
			pf, ok := ocsfClassFiles[ext]
			if !ok {
				t.Fatalf("%s extends unknown class %s", file, ext)
			}
			parent = s.resolve(t, pf, false)
		}
		c.category, c.uid, c.atLeastOne = parent.category, parent.uid, parent.atLeastOne
		for k, v := range parent.attrs {
			c.attrs[k] = v
		}
	}
	c.name, _ = def["name"].(string)
	if cat, ok := def["category"].(string); ok {
		c.category = cat
	}
	if uid, ok := def["uid"].(float64); ok {
		c.uid = int(uid)
	}
	if cons, ok := def["constraints"].(map[string]any); ok {
		c.atLeastOne = nil
		for _, a := range cons["at_least_one"].([]any) {
			c.atLeastOne = append(c.atLeastOne, a.(string))
		}
	}
	merge := func(attrs map[string]any) {
		for k, v := range attrs {
			if k == "$include" {
				continue
			}
			m := map[string]any{}
			for pk, pv := range c.attrs[k] {
				m[pk] = pv
			}
			for ok, ov := range v.(map[string]any) {
				m[ok] = ov
			}
			c.attrs[k] = m
		}
	}
	attrs, _ := def["attributes"].(map[string]any)
	if inc, ok := attrs["$include"].([]any); ok {
		for _, f := range inc {
			if strings.HasPrefix(f.(string), "profiles/") {
				continue
			}
			merge(ocsfReadJSON(t, filepath.Join(s.dir, f.(string)))["attributes"].(map[string]any))
		}
	}
	merge(attrs)
	return c
}

func (s *ocsfSchema) object(t *testing.T, name string) *ocsfClass {
	t.Helper()
	if o, ok := s.objects[name]; ok {
		return o
	}
	o := s.resolve(t, filepath.Join("objects", name+".json"), true)
	s.objects[name] = o
	return o
}

func (s *ocsfSchema) class(t *testing.T, name string) *ocsfClass {
	t.Helper()
	if c, ok := s.classes[name]; ok {
		return c
	}
	c := s.resolve(t, ocsfClassFiles[name], false)
	s.classes[name] = c
	return c
}

// classUID is the class's class_uid and category_uid as the schema computes them.
func (s *ocsfSchema) classUID(c *ocsfClass) (class, category int) {
	category = s.categories[c.category] // "other" (the base event) is 0
	return category*1000 + c.uid, category
}

// validate checks obj against the attributes of c: required ones present, none unknown, each of
// its dictionary type, enum values in the enum, and the at_least_one constraint.
func (s *ocsfSchema) validate(t *testing.T, c *ocsfClass, obj map[string]any, path string) []string {
	t.Helper()
	var errs []string
	for name, a := range c.attrs {
		if a["requirement"] == "required" {
			if _, ok := obj[name]; !ok {
				errs = append(errs, fmt.Sprintf("%s.%s: required attribute missing", path, name))
			}
		}
	}
	if len(c.atLeastOne) > 0 {
		found := false
		for _, a := range c.atLeastOne {
			if _, ok := obj[a]; ok {
				found = true
			}
		}
		if !found {
			errs = append(errs, fmt.Sprintf("%s: needs at least one of %v", path, c.atLeastOne))
		}
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, name := range keys {
		v := obj[name]
		a, ok := c.attrs[name]
		if !ok {
			errs = append(errs, fmt.Sprintf("%s.%s: not an attribute of %s", path, name, c.name))
			continue
		}
		d, ok := s.dict[name]
		if !ok {
			errs = append(errs, fmt.Sprintf("%s.%s: not in the dictionary", path, name))
			continue
		}
		typ, _ := d["type"].(string)
		if ct, ok := a["type"].(string); ok {
			typ = ct
		}
		// A class's enum adds to the dictionary's (which holds Unknown and Other). The uid
		// attributes' enums are filled in by the schema server; checkOCSFEvent checks them.
		enum := map[string]any{}
		for _, src := range []map[string]any{d, a} {
			if e, ok := src["enum"].(map[string]any); ok {
				for k, v := range e {
					enum[k] = v
				}
			}
		}
		if len(enum) == 0 || name == "class_uid" || name == "category_uid" || name == "type_uid" {
			enum = nil
		}
		if d["is_array"] == true {
			arr, ok := v.([]any)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s.%s: not an array", path, name))
				continue
			}
			for i, e := range arr {
				errs = append(errs, s.value(t, typ, enum, e, fmt.Sprintf("%s.%s[%d]", path, name, i))...)
			}
			continue
		}
		errs = append(errs, s.value(t, typ, enum, v, path+"."+name)...)
	}
	return errs
}

// value checks one value against an OCSF type (and enum, if any).
func (s *ocsfSchema) value(t *testing.T, typ string, enum map[string]any, v any, path string) []string {
	t.Helper()
	base := typ
	for {
		tt, ok := s.types[base]
		if !ok {
			break
		}
		next, ok := tt["type"].(string)
		if !ok {
			break
		}
		base = next
	}
	bad := func(what string) []string { return []string{fmt.Sprintf("%s: %v is not %s (%s)", path, v, what, typ)} }
	switch base {
	case "string_t":
		str, ok := v.(string)
		if !ok {
			return bad("a string")
		}
		switch typ {
		case "ip_t":
			if _, err := netip.ParseAddr(str); err != nil {
				return bad("an IP address")
			}
		case "email_t":
			if !strings.Contains(str, "@") {
				return bad("an email address")
			}
		}
		if enum != nil {
			if _, ok := enum[str]; !ok {
				return bad("in the enum")
			}
		}
	case "integer_t", "long_t":
		n, ok := v.(json.Number)
		if !ok {
			return bad("a number")
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			return bad("an integer")
		}
		if base == "integer_t" && (i < -1<<31 || i >= 1<<31) {
			return bad("a 32-bit integer")
		}
		if enum != nil {
			if _, ok := enum[string(n)]; !ok {
				return bad("in the enum")
			}
		}
	case "boolean_t":
		if _, ok := v.(bool); !ok {
			return bad("a boolean")
		}
	case "float_t":
		if _, ok := v.(json.Number); !ok {
			return bad("a number")
		}
	case "json_t":
		// any JSON value
	case "object":
		if _, ok := v.(map[string]any); !ok {
			return bad("an object")
		}
	default: // an object type
		m, ok := v.(map[string]any)
		if !ok {
			return bad("an object")
		}
		return s.validate(t, s.object(t, typ), m, path)
	}
	return nil
}

// checkOCSFEvent validates one emitted event against the pinned schema and returns its class
// name.
func checkOCSFEvent(t *testing.T, s *ocsfSchema, line []byte) (string, map[string]any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var ev map[string]any
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("event %s: %v", line, err)
	}
	num := func(k string) int {
		n, ok := ev[k].(json.Number)
		if !ok {
			t.Fatalf("event %s: %s is %v", line, k, ev[k])
		}
		i, err := n.Int64()
		if err != nil {
			t.Fatal(err)
		}
		return int(i)
	}
	var cls *ocsfClass
	var name string
	for n := range ocsfClassFiles {
		c := s.class(t, n)
		if uid, _ := s.classUID(c); uid == num("class_uid") && c.name == n {
			cls, name = c, n
		}
	}
	if cls == nil {
		t.Fatalf("event %s: class_uid %d is not a class of the pinned schema copy", line, num("class_uid"))
	}
	if _, cat := s.classUID(cls); cat != num("category_uid") {
		t.Errorf("event %s: category_uid %d, want %d", line, num("category_uid"), cat)
	}
	if want := num("class_uid")*100 + num("activity_id"); num("type_uid") != want {
		t.Errorf("event %s: type_uid %d, want %d", line, num("type_uid"), want)
	}
	for _, e := range s.validate(t, cls, ev, name) {
		t.Errorf("event %s: %s", line, e)
	}
	if md := ev["metadata"].(map[string]any); md["version"] != store.OCSFVersion {
		t.Errorf("event %s: metadata.version %v", line, md["version"])
	}
	return name, ev
}

// ocsfRecords is one record of every kind, with and without the optional fields.
func ocsfRecords(tenant string) []*core.Record {
	at := time.Date(2026, 3, 4, 5, 6, 7, 890123000, time.UTC)
	full := core.Actor{ID: "u-1", Type: core.ActorTenantUser, Email: "ann@example.com"}
	return []*core.Record{
		{ID: core.NewID(), OccurredAt: at, Kind: core.KindHTTP, Action: "invoice.create", Severity: core.SeverityInfo,
			Tenant: core.Tenant{ID: tenant}, Actor: full, RequestID: "req-1", Method: "POST", Route: "/invoices",
			Path: "/invoices", Status: 201, IP: netip.MustParseAddr("10.1.2.3"), UserAgent: "curl/8",
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7"},
		{ID: core.NewID(), OccurredAt: at, Kind: core.KindHTTP, Action: "http.request", Severity: core.SeverityError,
			Method: "OPTIONS", Path: "/x", Status: 503},
		{ID: core.NewID(), OccurredAt: at, Kind: core.KindHTTP, Action: "invoice.get", Severity: core.SeverityWarning,
			Tenant: core.Tenant{ID: tenant}, Actor: core.Actor{Type: core.ActorService, ID: "svc"}, Method: "GET", Path: "/invoices/1", Status: 404,
			IP: netip.MustParseAddr("2001:db8::1")},
		{ID: core.NewID(), OccurredAt: at, Kind: core.KindInsert, Action: "invoice.created", Severity: core.SeverityInfo,
			Tenant: core.Tenant{ID: tenant}, Actor: full, ResourceType: "invoices", ResourceID: "7", RequestID: "req-1",
			After: map[string]any{"id": 7, "total": 12.5}},
		{ID: core.NewID(), OccurredAt: at, Kind: core.KindUpdate, Action: "invoice.updated", Severity: core.SeverityWarning,
			Tenant: core.Tenant{ID: tenant}, Actor: full, ResourceType: "invoices", ResourceID: "7",
			Before: map[string]any{"id": 7, "total": 12.5}, After: map[string]any{"id": 7, "total": 20}},
		{ID: core.NewID(), OccurredAt: at, Kind: core.KindDelete, Action: "invoice.deleted", Severity: core.SeverityCritical,
			ResourceType: "invoices", Before: map[string]any{"id": 7}, IP: netip.MustParseAddr("10.0.0.9")},
		{ID: core.NewID(), OccurredAt: at, Kind: core.KindCustom, Action: "report.generated", Severity: core.SeverityInfo,
			Tenant: core.Tenant{ID: tenant}, Actor: core.Actor{Type: core.ActorSystem}, ResourceType: "reports", ResourceID: "r1",
			Metadata: map[string]any{"rows": 3}},
	}
}

func TestExportOCSF(t *testing.T) {
	schema := loadOCSFSchema(t, store.OCSFVersion)
	e := newEnv(t, store.Options{})
	recs := append(ocsfRecords("acme"), seed([]string{"acme"}, 20, time.Now())...)
	e.write(t, recs...)
	byID := map[string]*core.Record{}
	for _, r := range recs {
		byID[r.ID.String()] = r
	}

	var out bytes.Buffer
	n, err := e.st.Export(context.Background(), store.AllTenantsScope(), store.Filter{}, store.ExportOptions{Format: store.FormatOCSF}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(recs)) {
		t.Fatalf("exported %d records, want %d", n, len(recs))
	}
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	classes := map[string]int{}
	lines := 0
	for sc.Scan() {
		lines++
		name, ev := checkOCSFEvent(t, schema, sc.Bytes())
		classes[name]++
		md := ev["metadata"].(map[string]any)
		r := byID[md["uid"].(string)]
		if r == nil {
			t.Fatalf("event %s: metadata.uid is no written record", sc.Bytes())
		}
		want := map[core.Kind]string{core.KindHTTP: "api_activity", core.KindInsert: "entity_management",
			core.KindUpdate: "entity_management", core.KindDelete: "entity_management", core.KindCustom: "base_event"}[r.Kind]
		if name != want {
			t.Errorf("%s record mapped to %s, want %s", r.Kind, name, want)
		}
		if got, _ := ev["time"].(json.Number).Int64(); got != r.OccurredAt.UnixMilli() {
			t.Errorf("time %d, want %d", got, r.OccurredAt.UnixMilli())
		}
		if r.Tenant.ID != "" && md["tenant_uid"] != r.Tenant.ID || r.Tenant.ID == "" && md["tenant_uid"] != nil {
			t.Errorf("tenant_uid %v, want %q", md["tenant_uid"], r.Tenant.ID)
		}
		if r.RequestID != "" && md["correlation_uid"] != r.RequestID {
			t.Errorf("correlation_uid %v, want %q", md["correlation_uid"], r.RequestID)
		}
		if r.Kind == core.KindHTTP {
			if ev["status_code"] != strconv.Itoa(r.Status) {
				t.Errorf("status_code %v, want %d", ev["status_code"], r.Status)
			}
			if r.IP.IsValid() && ev["src_endpoint"].(map[string]any)["ip"] != r.IP.String() {
				t.Errorf("src_endpoint %v, want ip %s", ev["src_endpoint"], r.IP)
			}
			wantAct := map[string]string{"POST": "1", "GET": "2", "OPTIONS": "99"}[r.Method]
			if ev["activity_id"].(json.Number).String() != wantAct {
				t.Errorf("%s: activity_id %v, want %s", r.Method, ev["activity_id"], wantAct)
			}
		}
		if r.TraceID != "" && ev["unmapped"].(map[string]any)["trace_id"] != r.TraceID {
			t.Errorf("unmapped.trace_id %v, want %s", ev["unmapped"], r.TraceID)
		}
		if r.Actor.ID != "" && ev["actor"] != nil {
			u := ev["actor"].(map[string]any)["user"].(map[string]any)
			if u["uid"] != r.Actor.ID || r.Actor.Email != "" && !strings.EqualFold(u["email_addr"].(string), r.Actor.Email) {
				t.Errorf("actor.user %v, want %s %s", u, r.Actor.ID, r.Actor.Email)
			}
		}
		switch r.Kind {
		case core.KindInsert, core.KindUpdate, core.KindDelete:
			want := map[core.Kind]string{core.KindInsert: "1", core.KindUpdate: "3", core.KindDelete: "4"}[r.Kind]
			if ev["activity_id"].(json.Number).String() != want {
				t.Errorf("%s: activity_id %v, want %s", r.Kind, ev["activity_id"], want)
			}
			ent := ev["entity"].(map[string]any)
			if (r.Before != nil) != (ent["data"] != nil) {
				t.Errorf("%s: entity %v, before %v", r.Kind, ent, r.Before)
			}
			if r.After != nil {
				res, _ := ev["entity_result"].(map[string]any)
				if res == nil || res["data"] == nil {
					t.Errorf("%s: entity_result %v, after %v", r.Kind, res, r.After)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if lines != len(recs) {
		t.Fatalf("%d lines, want %d", lines, len(recs))
	}
	for _, c := range []string{"api_activity", "entity_management", "base_event"} {
		if classes[c] == 0 {
			t.Errorf("no %s event", c)
		}
	}
}

// TestOCSFValidatorRejects makes sure the validator catches what it is meant to catch.
func TestOCSFValidatorRejects(t *testing.T) {
	schema := loadOCSFSchema(t, store.OCSFVersion)
	cls := schema.class(t, "api_activity")
	good := func() map[string]any {
		var ev map[string]any
		b, _ := json.Marshal(store.OCSFEvent(&store.Record{ID: core.NewID(), Kind: core.KindHTTP, Method: "GET",
			Severity: core.SeverityInfo, ActorType: core.ActorAnonymous, IP: "10.0.0.1"}))
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	if errs := schema.validate(t, cls, good(), "e"); len(errs) > 0 {
		t.Fatalf("valid event rejected: %v", errs)
	}
	for name, mutate := range map[string]func(map[string]any){
		"missing required":  func(ev map[string]any) { delete(ev, "src_endpoint") },
		"unknown attribute": func(ev map[string]any) { ev["bogus"] = 1 },
		"wrong type":        func(ev map[string]any) { ev["time"] = "now" },
		"enum":              func(ev map[string]any) { ev["severity_id"] = json.Number("42") },
		"nested required":   func(ev map[string]any) { delete(ev["metadata"].(map[string]any), "product") },
		"at least one":      func(ev map[string]any) { ev["actor"] = map[string]any{} },
		"bad ip":            func(ev map[string]any) { ev["src_endpoint"] = map[string]any{"ip": "nope"} },
	} {
		ev := good()
		mutate(ev)
		if errs := schema.validate(t, cls, ev, "e"); len(errs) == 0 {
			t.Errorf("%s: not rejected", name)
		}
	}
}
