// Package plant plants secrets in request and response bodies of every shape (JSON, form,
// multipart, XML, YAML, text, .netrc, .pgpass), for the tests that check that no planted secret
// reaches a stored audit record.
package plant

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"mime/multipart"
	"net/url"
	"slices"
	"strings"
)

// Plant is a secret planted in a body.
type Plant struct {
	Name   string   // what kind of secret it is, for failure messages
	Key    string   // the key it is planted under
	Values []string // its value (several for a list)
	Secret []string // what must never be stored, checked in windows of Window bytes
	// Shape: found by what the value is (JWT, card number, cloud key, PEM block), not by the key
	// it is under.
	Shape bool
	Block bool // a multi-line value (a block scalar in YAML)
}

// Window is the length of the pieces of a secret looked for in stored records: a stored piece
// this long of a secret is a leak, also where the capture cap cut the secret.
const Window = 10

// secret returns a unique secret: base64url characters only, so that every format holds it as
// it is.
func secret(tag string, i int) string { return fmt.Sprintf("Qz%sk%dWm7hXp4", tag, i) }

// Plants returns the secrets planted in every body shape.
func Plants(tag string) []Plant {
	s := func(i int) string { return secret(tag, i) }
	jwtPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"` + s(20) + `"}`))
	jwt := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + jwtPayload + "." + s(21) + "Sig_-x"
	pemBody := "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" + s(22)
	return []Plant{
		{Name: "password", Key: "password", Values: []string{s(1)}, Secret: []string{s(1)}},
		{Name: "api key", Key: "x-api-key", Values: []string{s(2)}, Secret: []string{s(2)}},
		{Name: "client secret", Key: "client_secret", Values: []string{s(3)}, Secret: []string{s(3)}},
		{Name: "access token", Key: "accessToken", Values: []string{s(4)}, Secret: []string{s(4)}},
		{Name: "bearer under a neutral key", Key: "note", Values: []string{"Bearer " + s(5)}, Secret: []string{s(5)}},
		{Name: "key=value under a neutral key", Key: "config", Values: []string{"db_password=" + s(6)}, Secret: []string{s(6)}},
		{Name: "secret told in a sentence under a neutral key", Key: "remark", Values: []string{"my new password is " + s(11) + ", keep it"}, Secret: []string{s(11)}},
		{Name: "URL userinfo", Key: "dsn", Values: []string{"postgres://app:" + s(7) + "@db:5432/x"}, Secret: []string{s(7)}},
		{Name: "list under a sensitive key", Key: "passwords", Values: []string{s(8), s(9)}, Secret: []string{s(8), s(9)}},
		{Name: "block under a sensitive key", Key: "private_key", Values: []string{"first line\n" + s(10) + "\nlast line"},
			Secret: []string{s(10)}, Block: true},
		{Name: "JWT under a neutral key", Key: "data", Values: []string{jwt}, Secret: []string{jwtPayload, s(21)}, Shape: true},
		{Name: "card number under a neutral key", Key: "memo", Values: []string{"4242424242424242"}, Secret: []string{"4242424242424242"}, Shape: true},
		{Name: "cloud key under a neutral key", Key: "aws", Values: []string{"AKIAIOSFODNN7EXAMPLE"}, Secret: []string{"AKIAIOSFODNN7EXAMPLE"}, Shape: true},
		{Name: "PEM block under a neutral key", Key: "cert", Values: []string{"-----BEGIN PRIVATE KEY-----\n" + pemBody + "\n-----END PRIVATE KEY-----"},
			Secret: []string{pemBody}, Shape: true, Block: true},
	}
}

// nameValue is the name/value pair planted where a format has nested structures.
func nameValue(tag string) (name, value string) { return "DB_PASSWORD", secret(tag, 30) }

// Shape is a body format that plants secrets.
type Shape struct {
	Name        string // json, form, multipart, xml, yaml, text, netrc, pgpass
	ContentType string // the right Content-Type
	// Render returns a body holding the secrets of tag and a neutral "comment" field holding
	// noise: escaped for the format, or inserted raw (so that it may break the format) with raw.
	Render func(tag, noise string, raw bool) string
}

// Shapes are the body shapes.
var Shapes = []Shape{
	{"json", "application/json", renderJSON},
	{"form", "application/x-www-form-urlencoded", renderForm},
	{"multipart", "multipart/form-data; boundary=bsB0undary", renderMultipart},
	{"xml", "application/xml", renderXML},
	{"yaml", "application/yaml", renderYAML},
	{"text", "text/plain", renderText},
	{"netrc", "text/plain", func(tag, noise string, raw bool) string {
		return "# " + oneLine(noise) + "\nmachine api.example.com\n  login bob\n  password " + secret(tag, 40) +
			"\nmachine x login y password " + secret(tag, 41) + " account " + secret(tag, 42) +
			"\ndefault login anon password " + secret(tag, 43) + "\n"
	}},
	{"pgpass", "text/plain", func(tag, noise string, raw bool) string {
		return "# " + oneLine(noise) + "\ndb.example.com:5432:app:bob:" + secret(tag, 50) + "\n*:*:*:ro:" + secret(tag, 51) +
			"\nlocalhost:6432:*:*:" + secret(tag, 52) + "\\:x\n"
	}},
}

// extraSecrets are the secrets a shape plants besides Plants.
func extraSecrets(shape, tag string) []string {
	switch shape {
	case "netrc":
		return []string{secret(tag, 40), secret(tag, 41), secret(tag, 42), secret(tag, 43)}
	case "pgpass":
		return []string{secret(tag, 50), secret(tag, 51), secret(tag, 52)}
	}
	return nil
}

func oneLine(s string) string { return strings.NewReplacer("\n", " ", "\r", " ").Replace(s) }

func renderJSON(tag, noise string, raw bool) string {
	var b strings.Builder
	b.WriteString(`{"id":42,"comment":`)
	if raw {
		b.WriteString(`"` + noise + `"`)
	} else {
		q, _ := json.Marshal(noise)
		b.Write(q)
	}
	for _, p := range Plants(tag) {
		k, _ := json.Marshal(p.Key)
		var v []byte
		if len(p.Values) > 1 {
			v, _ = json.Marshal(p.Values)
		} else {
			v, _ = json.Marshal(p.Values[0])
		}
		fmt.Fprintf(&b, ",%s:%s", k, v)
	}
	n, v := nameValue(tag)
	fmt.Fprintf(&b, `,"env":[{"name":"HOME","value":"/root"},{"name":%q,"value":%q}]}`, n, v)
	return b.String()
}

func renderForm(tag, noise string, raw bool) string {
	vals := []string{"id=42"}
	if raw {
		vals = append(vals, "comment="+noise)
	} else {
		vals = append(vals, "comment="+url.QueryEscape(noise))
	}
	for _, p := range Plants(tag) {
		for _, v := range p.Values {
			vals = append(vals, url.QueryEscape(p.Key)+"="+url.QueryEscape(v))
		}
	}
	return strings.Join(vals, "&")
}

func renderMultipart(tag, noise string, raw bool) string {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.SetBoundary("bsB0undary")
	_ = mw.WriteField("id", "42")
	_ = mw.WriteField("comment", noise)
	for _, p := range Plants(tag) {
		for _, v := range p.Values {
			_ = mw.WriteField(p.Key, v)
		}
	}
	fw, _ := mw.CreateFormFile("upload", "notes.txt")
	_, _ = fw.Write([]byte("password=" + secret(tag, 60) + "\n"))
	_ = mw.Close()
	return buf.String()
}

func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func renderXML(tag, noise string, raw bool) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<request id=\"42\">\n<comment>")
	if raw {
		b.WriteString(noise)
	} else {
		b.WriteString(xmlText(noise))
	}
	b.WriteString("</comment>\n")
	for _, p := range Plants(tag) {
		el := strings.NewReplacer("-", "_").Replace(p.Key)
		if len(p.Values) > 1 {
			fmt.Fprintf(&b, "<%s>", el)
			for _, v := range p.Values {
				fmt.Fprintf(&b, "<item>%s</item>", xmlText(v))
			}
			fmt.Fprintf(&b, "</%s>\n", el)
			continue
		}
		fmt.Fprintf(&b, "<%s>%s</%s>\n", el, xmlText(p.Values[0]), el)
	}
	n, v := nameValue(tag)
	fmt.Fprintf(&b, "<entry key=%q>%s</entry>\n<property name=%q value=%q/>\n<param><name>%s</name><value>%s</value></param>\n",
		"db."+strings.ToLower(n), v, n, v, n, v)
	b.WriteString("</request>\n")
	return b.String()
}

func renderYAML(tag, noise string, raw bool) string {
	var b strings.Builder
	b.WriteString("id: 42\ncomment: ")
	if raw {
		b.WriteString(noise)
	} else {
		q, _ := json.Marshal(noise) // a JSON string is a YAML double-quoted scalar
		b.Write(q)
	}
	b.WriteString("\n")
	for _, p := range Plants(tag) {
		switch {
		case len(p.Values) > 1:
			fmt.Fprintf(&b, "%s:\n", p.Key)
			for _, v := range p.Values {
				fmt.Fprintf(&b, "  - %s\n", v)
			}
		case p.Block:
			fmt.Fprintf(&b, "%s: |\n  %s\n", p.Key, strings.ReplaceAll(p.Values[0], "\n", "\n  "))
		default:
			fmt.Fprintf(&b, "%s: %q\n", p.Key, p.Values[0])
		}
	}
	n, v := nameValue(tag)
	fmt.Fprintf(&b, "env:\n  - name: HOME\n    value: /root\n  - name: %s\n    value: %s\n", n, v)
	return b.String()
}

// renderText is a text dump that is not YAML: key=value lines, a header line, a YAML-like list and
// block, and a PEM block.
func renderText(tag, noise string, raw bool) string {
	var b strings.Builder
	b.WriteString("[dump] request 42\ncomment=" + oneLine(noise) + "\n")
	for _, p := range Plants(tag) {
		switch {
		case len(p.Values) > 1:
			fmt.Fprintf(&b, "%s:\n", p.Key)
			for _, v := range p.Values {
				fmt.Fprintf(&b, "  - %s\n", v)
			}
		case p.Block && strings.HasPrefix(p.Values[0], "-----BEGIN"):
			fmt.Fprintf(&b, "%s\n", p.Values[0])
		case p.Block:
			fmt.Fprintf(&b, "%s: |\n  %s\n", p.Key, strings.ReplaceAll(p.Values[0], "\n", "\n  "))
		default:
			fmt.Fprintf(&b, "%s=%s\n", p.Key, p.Values[0])
		}
	}
	return b.String()
}

// ContentTypes returns the declared content types tried for a shape whose right type is right:
// right, right with a charset, missing, and wrong ones.
func ContentTypes(right string) []string {
	cts := []string{right, right + "; charset=utf-8", "", "text/plain", "application/x-www-form-urlencoded", "application/json"}
	if right == "application/x-www-form-urlencoded" || right == "application/json" {
		cts = append(cts, "application/xml")
	}
	return cts
}

// Secrets returns the secrets that the shape named shape plants for tag, each with the name of
// its plant.
func Secrets(shape, tag string) map[string]string {
	out := map[string]string{}
	if shape != "netrc" && shape != "pgpass" {
		for _, p := range Plants(tag) {
			for _, s := range p.Secret {
				out[s] = p.Name
			}
		}
		out[secret(tag, 60)] = "uploaded file"
	}
	for _, s := range extraSecrets(shape, tag) {
		out[s] = shape + " secret"
	}
	if shape == "json" || shape == "yaml" || shape == "xml" {
		_, v := nameValue(tag)
		out[v] = "name/value pair (name DB_PASSWORD, value ...)"
	}
	return out
}

// Leaks returns a description of every secret of which a piece of Window bytes is in stored,
// sorted.
func Leaks(stored string, secrets map[string]string) []string {
	var out []string
	for sec, name := range secrets {
		for i := 0; i+Window <= len(sec); i++ {
			if w := sec[i : i+Window]; strings.Contains(stored, w) {
				out = append(out, fmt.Sprintf("%s (%q)", name, w))
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// Contains reports whether s holds a piece of Window bytes of one of the secrets.
func Contains(s string, secrets map[string]string) bool {
	return len(Leaks(s, secrets)) > 0
}
