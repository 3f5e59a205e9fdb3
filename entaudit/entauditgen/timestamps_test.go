package entauditgen_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/mixin"

	"github.com/auditkit/auditkit/entaudit"
)

// Stamped has update-time fields of every sort: mixin.Time's update_time, an omitted one, a
// non-time UpdateDefault, and a time field named like a timestamp that ent does not set.
type Stamped struct{ ent.Schema }

func (Stamped) Mixin() []ent.Mixin { return []ent.Mixin{mixin.Time{}} }

func (Stamped) Fields() []ent.Field {
	return []ent.Field{
		field.Time("touched_at").Default(time.Now).UpdateDefault(time.Now).Annotations(entaudit.Omit()),
		field.Int("revision").Default(1).UpdateDefault(func() int { return 2 }),
		field.Time("updated_at").Optional(),
	}
}

// The generated Type lists as AutoUpdateTime the time fields ent sets on every update
// (UpdateDefault), found through the schema rather than by name, and no others.
func TestAutoUpdateTime(t *testing.T) {
	dir, err := generate(t, entest, Stamped{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(dir, "entaudit.go"))
	if err != nil {
		t.Fatal(err)
	}
	// The entry's fields are aligned by gofmt, so the spacing after Name: varies.
	block := regexp.MustCompile(`(?s)Name: +"Stamped".*?\n\t},`).FindString(string(src))
	if want := `AutoUpdateTime: []string{"update_time"}`; !strings.Contains(block, want) || strings.Count(block, "AutoUpdateTime") != 1 {
		t.Errorf("the entry of Stamped lacks %s or has more:\n%s", want, block)
	}
}
