package entauditgen_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"entgo.io/ent"
	"entgo.io/ent/entc"
	"entgo.io/ent/entc/gen"
	"entgo.io/ent/entc/load"
	entschema "entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/mixin"

	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/entauditgen"
	"github.com/auditkit/auditkit/entaudit/internal/entest/schema"
	ginschema "github.com/auditkit/auditkit/examples/gin-ent/ent/schema"
)

// target is a generated ent package of the repository and the schemas it is generated from.
type target struct {
	pkg      string // import path of the generated package
	dir      string // where it is committed, relative to this package
	features []gen.Feature
	schemas  []ent.Interface
}

var (
	// entest is the client of the entaudit tests (entaudit/internal/entest/entc.go).
	entest = target{
		pkg:      "github.com/auditkit/auditkit/entaudit/internal/entest",
		dir:      filepath.Join("..", "internal", "entest"),
		features: []gen.Feature{gen.FeatureUpsert, gen.FeatureExecQuery},
		schemas:  []ent.Interface{schema.Asset{}, schema.Card{}, schema.Comment{}, schema.Document{}, schema.Group{}, schema.Note{}, schema.Pet{}, schema.Setting{}, schema.User{}},
	}
	// ginEnt is the client of the Gin + ent example (examples/gin-ent/ent/entc.go).
	ginEnt = target{
		pkg:     "github.com/auditkit/auditkit/examples/gin-ent/ent",
		dir:     filepath.Join("..", "..", "examples", "gin-ent", "ent"),
		schemas: []ent.Interface{ginschema.Customer{}, ginschema.Order{}},
	}
)

// generate runs the code generation of tg's schemas (plus extra) into a temporary directory, in
// process, with the extension, and returns the directory.
func generate(t *testing.T, tg target, extra ...ent.Interface) (string, error) {
	t.Helper()
	var specs []*load.Schema
	for _, s := range append(slices.Clone(tg.schemas), extra...) {
		b, err := load.MarshalSchema(s)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := load.UnmarshalSchema(b)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, spec)
	}
	dir := t.TempDir()
	storage, err := gen.NewStorage("sql")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &gen.Config{
		Package:  tg.pkg,
		Schema:   tg.pkg + "/schema",
		Target:   dir,
		Storage:  storage,
		Features: tg.features,
	}
	if err := entc.Extensions(entauditgen.Extension())(cfg); err != nil {
		t.Fatal(err)
	}
	g, err := gen.NewGraph(cfg, specs...)
	if err != nil {
		t.Fatal(err)
	}
	return dir, g.Gen()
}

// The committed ent packages are what the extension generates today (run go generate in their
// directory after changing the extension or a schema).
func TestGeneratedCodeIsCurrent(t *testing.T) {
	for name, tg := range map[string]target{"entest": entest, "gin-ent": ginEnt} {
		t.Run(name, func(t *testing.T) {
			dir, err := generate(t, tg)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
					return err
				}
				rel, _ := filepath.Rel(dir, path)
				if rel == filepath.Join("runtime", "runtime.go") {
					return nil // stamped with the version of the generating binary
				}
				want, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				got, err := os.ReadFile(filepath.Join(tg.dir, rel))
				if err != nil {
					t.Errorf("%s is generated but not committed", rel)
					return nil
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from what the extension generates", rel)
				}
				n++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if n < 10 {
				t.Fatalf("only %d files generated", n)
			}
		})
	}
}

// typeBlock returns the AuditSchema entry of the type name in the generated entaudit.go.
func typeBlock(t *testing.T, dir, name string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(dir, "entaudit.go"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	i := strings.Index(s, `Name:     "`+name+`"`)
	if i < 0 {
		t.Fatalf("entaudit.go has no type %s", name)
	}
	j := strings.Index(s[i:], "\n\t},")
	if j < 0 {
		t.Fatalf("the entry of %s does not end", name)
	}
	return s[i : i+j]
}

func TestGeneratedSchema(t *testing.T) {
	dir, err := generate(t, entest)
	if err != nil {
		t.Fatal(err)
	}
	for typ, wants := range map[string][]string{
		"User": {
			`Redact:   []string{"password_hash", "recovery_code"}`,
			`Omit:     []string{"avatar"}`,
			`{Name: "groups", Target: "Group", Storage: entaudit.StoredInJoinTable, Table: "user_groups", Column: "user_id", TargetColumn: "group_id"}`,
			`{Name: "pets", Target: "Pet", Storage: entaudit.StoredInTargetTable, Table: "pets", Column: "user_pets"}`,
		},
		"Setting": {`Skip:     true`},
		"Group": {
			`{Name: "users", Target: "User", Storage: entaudit.StoredInJoinTable, Table: "user_groups", Column: "group_id", TargetColumn: "user_id"}`,
		},
		"Pet": {`{Name: "owner", Target: "User", Storage: entaudit.StoredInOwnTable, Table: "pets", Column: "user_pets"}`},
		"Comment": {
			`{Name: "author", Target: "User", Storage: entaudit.StoredInOwnTable, Table: "comments", Column: "comment_author"}`,
			`{Name: "twin", Target: "Comment", Storage: entaudit.StoredInOwnTable, Table: "comments", Column: "comment_twin"}`,
		},
	} {
		block := typeBlock(t, dir, typ)
		for _, want := range wants {
			if !strings.Contains(block, want) {
				t.Errorf("the entry of %s lacks %s:\n%s", typ, want, block)
			}
		}
	}
}

// fieldsMixin marks its fields; schemaMixin turns auditing of the schema using it off.
type fieldsMixin struct{ mixin.Schema }

func (fieldsMixin) Fields() []ent.Field {
	return []ent.Field{
		field.String("token").Annotations(entaudit.Redact()),
		field.Bytes("blob").Annotations(entaudit.Omit()),
	}
}

type schemaMixin struct{ mixin.Schema }

func (schemaMixin) Annotations() []entschema.Annotation {
	return []entschema.Annotation{entaudit.Skip()}
}

// Mixed takes its marked fields from a mixin.
type Mixed struct{ ent.Schema }

func (Mixed) Mixin() []ent.Mixin { return []ent.Mixin{fieldsMixin{}} }

func (Mixed) Fields() []ent.Field { return []ent.Field{field.String("secret").Sensitive()} }

// MixedSkip is not audited because of its mixin.
type MixedSkip struct{ ent.Schema }

func (MixedSkip) Mixin() []ent.Mixin { return []ent.Mixin{schemaMixin{}} }

func (MixedSkip) Fields() []ent.Field { return []ent.Field{field.String("a")} }

// Annotations in a mixin count as if they were in the schema.
func TestMixinAnnotations(t *testing.T) {
	dir, err := generate(t, entest, Mixed{}, MixedSkip{})
	if err != nil {
		t.Fatal(err)
	}
	mixed := typeBlock(t, dir, "Mixed")
	for _, want := range []string{`Redact:   []string{"secret", "token"}`, `Omit:     []string{"blob"}`} {
		if !strings.Contains(mixed, want) {
			t.Errorf("the entry of Mixed lacks %s:\n%s", want, mixed)
		}
	}
	if strings.Contains(mixed, "Skip") {
		t.Errorf("Mixed is skipped:\n%s", mixed)
	}
	if skip := typeBlock(t, dir, "MixedSkip"); !strings.Contains(skip, `Skip:     true`) {
		t.Errorf("the entry of MixedSkip lacks Skip:\n%s", skip)
	}
}

type badSchemaAnnotation struct{ ent.Schema }

func (badSchemaAnnotation) Fields() []ent.Field { return []ent.Field{field.String("a")} }

func (badSchemaAnnotation) Annotations() []entschema.Annotation {
	return []entschema.Annotation{entaudit.Redact()}
}

type badFieldAnnotation struct{ ent.Schema }

func (badFieldAnnotation) Fields() []ent.Field {
	return []ent.Field{field.String("a").Annotations(entaudit.Skip())}
}

func TestAnnotationMisuse(t *testing.T) {
	for _, s := range []ent.Interface{badSchemaAnnotation{}, badFieldAnnotation{}} {
		if _, err := generate(t, entest, s); err == nil || !strings.Contains(err.Error(), "entauditgen") {
			t.Errorf("%T: %v, want an entauditgen error", s, err)
		}
	}
}
