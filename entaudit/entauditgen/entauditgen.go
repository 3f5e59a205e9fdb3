// Package entauditgen is the ent code-generation extension of entaudit. It adds one file,
// entaudit.go, to the generated ent package: AuditSchema, which tells entaudit.Hook how every
// schema is stored (tables, id columns, redacted and omitted fields, edges) and gives it access to
// the generated mutations (their driver, predicates, id, transaction and place in a CreateBulk).
//
// Add it to the code generation in entc.go:
//
//	err := entc.Generate("./schema", &gen.Config{}, entc.Extensions(entauditgen.Extension()))
//
// It is a separate package so that applications do not link ent's code generator into their
// binaries: only entc.go imports it.
package entauditgen

import (
	"embed"
	"encoding/json"
	"fmt"
	"slices"
	"text/template"

	"entgo.io/ent/entc"
	"entgo.io/ent/entc/gen"

	"github.com/auditkit/auditkit/entaudit"
)

//go:embed template/*.tmpl
var templateFS embed.FS

// Extension returns the entc extension that generates AuditSchema.
func Extension() entc.Extension { return extension{} }

type extension struct{ entc.DefaultExtension }

// Templates implements entc.Extension.
func (extension) Templates() []*gen.Template {
	return []*gen.Template{
		gen.MustParse(gen.NewTemplate("entaudit").
			Funcs(template.FuncMap{"entauditType": typeInfo}).
			ParseFS(templateFS, "template/*.tmpl")),
	}
}

// Hooks implements entc.Extension: it checks the annotations before anything is generated.
func (extension) Hooks() []gen.Hook {
	return []gen.Hook{func(next gen.Generator) gen.Generator {
		return gen.GenerateFunc(func(g *gen.Graph) error {
			for _, n := range g.Nodes {
				if _, err := typeInfo(n); err != nil {
					return err
				}
			}
			return next.Generate(g)
		})
	}}
}

// typeData is what the template needs to know about one ent type.
type typeData struct {
	Skip   bool
	Redact []string
	Omit   []string
	// AutoUpdateTime lists the time fields ent sets on every update (UpdateDefault).
	AutoUpdateTime []string
	Edges          []edgeData
}

// edgeData is what the template needs to know about one edge.
type edgeData struct {
	Name, Target, Storage, Table, Column, TargetColumn string
}

// typeInfo reads the entaudit annotations of t and classifies its edges.
func typeInfo(t *gen.Type) (typeData, error) {
	var info typeData
	a, err := annotation(t.Annotations)
	if err != nil {
		return info, fmt.Errorf("entauditgen: schema %s: %w", t.Name, err)
	}
	if a.Redact || a.Omit {
		return info, fmt.Errorf("entauditgen: schema %s: Redact and Omit are field annotations; on a schema use entaudit.Skip()", t.Name)
	}
	info.Skip = a.Skip || !t.HasOneFieldID()
	for _, f := range t.Fields {
		fa, err := annotation(f.Annotations)
		if err != nil {
			return info, fmt.Errorf("entauditgen: field %s.%s: %w", t.Name, f.Name, err)
		}
		if fa.Skip {
			return info, fmt.Errorf("entauditgen: field %s.%s: Skip is a schema annotation; on a field use entaudit.Omit()", t.Name, f.Name)
		}
		switch {
		case fa.Omit:
			info.Omit = append(info.Omit, f.StorageKey())
		case fa.Redact || f.Sensitive():
			info.Redact = append(info.Redact, f.StorageKey())
		}
		if f.UpdateDefault && f.IsTime() && !fa.Omit {
			info.AutoUpdateTime = append(info.AutoUpdateTime, f.StorageKey())
		}
	}
	for _, e := range t.Edges {
		ed := edgeData{Name: e.Name, Target: e.Type.Name, Table: e.Rel.Table}
		switch {
		case e.M2M():
			if len(e.Rel.Columns) != 2 {
				return info, fmt.Errorf("entauditgen: edge %s.%s: join table %s has %d columns, want 2", t.Name, e.Name, e.Rel.Table, len(e.Rel.Columns))
			}
			// Rel.Columns is (owner, reference) in the order of the edge.To that declares the
			// edge; an inverse edge (edge.From) sees it from the reference side.
			ed.Storage, ed.Column, ed.TargetColumn = "StoredInJoinTable", e.Rel.Columns[0], e.Rel.Columns[1]
			if e.IsInverse() {
				ed.Column, ed.TargetColumn = ed.TargetColumn, ed.Column
			}
		case len(e.Rel.Columns) != 1:
			return info, fmt.Errorf("entauditgen: edge %s.%s: %d foreign key columns, want 1", t.Name, e.Name, len(e.Rel.Columns))
		case e.OwnFK():
			ed.Storage, ed.Table, ed.Column = "StoredInOwnTable", t.Table(), e.Rel.Columns[0]
		default:
			ed.Storage, ed.Column = "StoredInTargetTable", e.Rel.Columns[0]
		}
		info.Edges = append(info.Edges, ed)
	}
	slices.Sort(info.Redact)
	slices.Sort(info.Omit)
	slices.Sort(info.AutoUpdateTime)
	return info, nil
}

// annotation decodes the entaudit annotation from a schema object's annotations. The loader
// stores annotations as decoded JSON, so the value is re-encoded into the typed struct.
func annotation(as map[string]any) (entaudit.Annotation, error) {
	var a entaudit.Annotation
	v, ok := as[entaudit.AnnotationName]
	if !ok || v == nil {
		return a, nil
	}
	if x, ok := v.(entaudit.Annotation); ok {
		return x, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return a, fmt.Errorf("encoding the %s annotation: %w", entaudit.AnnotationName, err)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("decoding the %s annotation: %w", entaudit.AnnotationName, err)
	}
	return a, nil
}
