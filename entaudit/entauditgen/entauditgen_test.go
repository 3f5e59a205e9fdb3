package entauditgen_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"entgo.io/ent"
	"entgo.io/ent/entc"
	"entgo.io/ent/entc/gen"
	"entgo.io/ent/entc/load"
	entschema "entgo.io/ent/schema"
	"entgo.io/ent/schema/field"

	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/entauditgen"
	"github.com/auditkit/auditkit/entaudit/internal/entest/schema"
)

const testPkg = "github.com/auditkit/auditkit/entaudit/internal/entest"

// generate runs the code generation of the test package's schemas (plus extra) into a temporary
// directory, in process, with the extension, and returns the directory.
func generate(t *testing.T, extra ...ent.Interface) (string, error) {
	t.Helper()
	var specs []*load.Schema
	for _, s := range append([]ent.Interface{schema.Card{}, schema.Comment{}, schema.Document{}, schema.Group{}, schema.Pet{}, schema.Setting{}, schema.User{}}, extra...) {
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
		Package:  testPkg,
		Schema:   testPkg + "/schema",
		Target:   dir,
		Storage:  storage,
		Features: []gen.Feature{gen.FeatureUpsert, gen.FeatureExecQuery},
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

// The committed test client is what the extension generates today (run go generate in
// internal/entest after changing the extension or a schema).
func TestGeneratedCodeIsCurrent(t *testing.T) {
	dir, err := generate(t)
	if err != nil {
		t.Fatal(err)
	}
	committed := filepath.Join("..", "internal", "entest")
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
		got, err := os.ReadFile(filepath.Join(committed, rel))
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
	src, err := os.ReadFile(filepath.Join(dir, "entaudit.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`Redact:   []string{"password_hash", "recovery_code"}`,
		`Omit:     []string{"avatar"}`,
		`Skip:     true`,
		`{Name: "groups", Target: "Group", Storage: entaudit.StoredInJoinTable, Table: "user_groups", Column: "user_id", TargetColumn: "group_id"}`,
		`{Name: "users", Target: "User", Storage: entaudit.StoredInJoinTable, Table: "user_groups", Column: "group_id", TargetColumn: "user_id"}`,
		`{Name: "pets", Target: "Pet", Storage: entaudit.StoredInTargetTable, Table: "pets", Column: "user_pets"}`,
		`{Name: "owner", Target: "User", Storage: entaudit.StoredInOwnTable, Table: "pets", Column: "user_pets"}`,
	} {
		if !strings.Contains(string(src), want) {
			t.Errorf("entaudit.go lacks %s", want)
		}
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
		if _, err := generate(t, s); err == nil || !strings.Contains(err.Error(), "entauditgen") {
			t.Errorf("%T: %v, want an entauditgen error", s, err)
		}
	}
}
