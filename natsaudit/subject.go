package natsaudit

import (
	"errors"
	"fmt"
	"strings"
)

// Defaults of the stream, subject and consumer names.
const (
	// DefaultStream is the stream's name when none is given.
	DefaultStream = "AUDIT"
	// DefaultSubjectPrefix is the first token of every subject records are published on.
	DefaultSubjectPrefix = "audit"
	// DefaultDurable is the ingest consumer's durable name when none is given.
	DefaultDurable = "auditkit-ingest"
	// NoTenantToken is the last token of the subject of records without a tenant. No tenant id
	// encodes to it (TenantToken writes "_" only as the start of an escape).
	NoTenantToken = "_"
)

// TenantToken returns the subject token of a tenant id: the id itself when it holds only ASCII
// letters, digits and '-', and otherwise each other byte written as '_' and two upper-case hex
// digits ("acme.eu" is "acme_2Eeu"). Different ids give different tokens, and every token is a
// valid NATS subject token (no '.', '*', '>' or white space). The empty id gives NoTenantToken.
func TenantToken(tenantID string) string {
	if tenantID == "" {
		return NoTenantToken
	}
	plain := true
	for i := 0; i < len(tenantID); i++ {
		if !plainByte(tenantID[i]) {
			plain = false
			break
		}
	}
	if plain {
		return tenantID
	}
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(tenantID) + 8)
	for i := 0; i < len(tenantID); i++ {
		c := tenantID[i]
		if plainByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xF])
	}
	return b.String()
}

func plainByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// Subject returns the subject the records of tenantID are published on: prefix, a dot and
// TenantToken(tenantID). A live reader of one tenant subscribes to it; prefix + ".>" covers every
// tenant.
func Subject(prefix, tenantID string) string {
	return prefix + "." + TenantToken(tenantID)
}

// checkPrefix says what is wrong with a subject prefix: it must be one or more dot-separated
// tokens without wildcards or white space.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return errors.New("natsaudit: empty subject prefix")
	}
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" {
			return fmt.Errorf("natsaudit: subject prefix %q has an empty token", prefix)
		}
		if strings.ContainsAny(tok, "*> \t\r\n") {
			return fmt.Errorf("natsaudit: subject prefix %q holds a wildcard or white space", prefix)
		}
	}
	return nil
}

// checkName says what is wrong with a stream or consumer name: NATS takes names without '.',
// '*', '>', path separators or white space.
func checkName(what, name string) error {
	if name == "" {
		return fmt.Errorf("natsaudit: empty %s name", what)
	}
	if strings.ContainsAny(name, ".*>/\\ \t\r\n") {
		return fmt.Errorf("natsaudit: %s name %q holds '.', '*', '>', a path separator or white space", what, name)
	}
	return nil
}
