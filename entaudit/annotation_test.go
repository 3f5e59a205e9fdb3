package entaudit_test

import (
	"testing"

	entschema "entgo.io/ent/schema"

	"github.com/auditkit/auditkit/entaudit"
)

// Annotations from a mixin and from the schema add up.
func TestAnnotationMerge(t *testing.T) {
	for _, c := range []struct {
		a     entaudit.Annotation
		other entschema.Annotation
		want  entaudit.Annotation
	}{
		{entaudit.Skip(), entaudit.Redact(), entaudit.Annotation{Skip: true, Redact: true}},
		{entaudit.Redact(), &entaudit.Annotation{Omit: true}, entaudit.Annotation{Redact: true, Omit: true}},
		{entaudit.Omit(), (*entaudit.Annotation)(nil), entaudit.Omit()},
		{entaudit.Redact(), entschema.Comment("x"), entaudit.Redact()},
	} {
		if got := c.a.Merge(c.other); got != c.want {
			t.Errorf("%+v.Merge(%+v) = %+v, want %+v", c.a, c.other, got, c.want)
		}
	}
	if entaudit.Skip().Name() != entaudit.AnnotationName {
		t.Errorf("Name() = %q", entaudit.Skip().Name())
	}
}
