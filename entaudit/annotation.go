package entaudit

import "entgo.io/ent/schema"

// AnnotationName is the name under which Annotation is stored in an ent schema.
const AnnotationName = "EntAudit"

// Annotation configures how a schema or one of its fields is audited. Put it in a schema's (or a
// mixin's) Annotations to configure the type, and in a field's Annotations to configure the field:
//
//	func (User) Annotations() []schema.Annotation {
//		return []schema.Annotation{entaudit.Skip()} // User is not audited
//	}
//
//	field.String("recovery_code").Annotations(entaudit.Redact())
//	field.Bytes("thumbnail").Annotations(entaudit.Omit())
//
// Fields declared Sensitive() in the schema are redacted without an annotation. Annotations are
// read when the code is generated (see package entauditgen): regenerate after changing them.
type Annotation struct {
	// Skip, on a schema, turns auditing of that type off.
	Skip bool `json:"skip,omitempty"`
	// Redact, on a field, masks its values: before and after images show "[REDACTED]", and a diff
	// shows that the field changed but not the values.
	Redact bool `json:"redact,omitempty"`
	// Omit, on a field, leaves it out of images and diffs entirely.
	Omit bool `json:"omit,omitempty"`
}

// Name implements schema.Annotation.
func (Annotation) Name() string { return AnnotationName }

// Merge implements schema.Merger, so that annotations from mixins and from the schema itself add up.
func (a Annotation) Merge(other schema.Annotation) schema.Annotation {
	var o Annotation
	switch x := other.(type) {
	case Annotation:
		o = x
	case *Annotation:
		if x != nil {
			o = *x
		}
	default:
		return a
	}
	return Annotation{Skip: a.Skip || o.Skip, Redact: a.Redact || o.Redact, Omit: a.Omit || o.Omit}
}

// Skip returns the schema annotation that turns auditing of a type off.
func Skip() Annotation { return Annotation{Skip: true} }

// Redact returns the field annotation that masks a field's values in audit records.
func Redact() Annotation { return Annotation{Redact: true} }

// Omit returns the field annotation that leaves a field out of audit records.
func Omit() Annotation { return Annotation{Omit: true} }

var (
	_ schema.Annotation = Annotation{}
	_ schema.Merger     = Annotation{}
)
