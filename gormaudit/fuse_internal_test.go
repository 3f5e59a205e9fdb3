package gormaudit

import (
	"regexp"
	"strings"
	"testing"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// keyCondRef is an independent statement of the written conditions writtenKeyCond accepts for
// the key column id of table items: the column bare (any case) or quoted, optionally qualified by
// the table, then "=" or IN (after a bare name, only with a blank between: "idin" is another
// name), then one placeholder (in parentheses after IN).
var keyCondRef = regexp.MustCompile(`^\s*(?:(?:"items"|[iI][tT][eE][mM][sS])\.)?` +
	`(?:"id"\s*(?:=\s*\?|` + inRef + `)|[iI][dD]\s*=\s*\?|[iI][dD]\s+` + inRef + `)\s*$`)

const inRef = `[iI][nN](?:\s+|\s*\()?\s*\?\s*\)?`

func refKeyCond(sql string) (string, bool) {
	if !keyCondRef.MatchString(sql) {
		return "", false
	}
	if strings.Contains(sql, "=") {
		return "=", true
	}
	// "IN (?" needs its ")", "IN ?" must not have one.
	open := strings.Contains(sql[strings.Index(strings.ToUpper(sql), "IN")+2:], "(")
	if open != strings.HasSuffix(strings.TrimSpace(sql), ")") {
		return "", false
	}
	return "IN", true
}

func FuzzWrittenKeyCond(f *testing.F) {
	for _, s := range []string{
		"id = ?", `"id" = ?`, "ID=?", `"items"."id" = ?`, "items.id IN ?", "id IN (?)", "id in(?)", "id IN?",
		`"ID" = ?`, "idx = ?", "id$ = ?", "idé = ?", "id = ? OR id = ?", "id = ?)", "id IN (?", "other.id = ?",
		`"items".id = ?`, "items . id = ?", "id == ?", "id IN", " id\t=\n? ", `"i""d" = ?`, "id = $1", "",
	} {
		f.Add(s)
	}
	m := &model{cols: []column{{name: "id"}, {name: "qty"}}, npk: 1}
	f.Fuzz(func(t *testing.T, sql string) {
		op, ok := m.writtenKeyCond("items", sql)
		rop, rok := refKeyCond(sql)
		if ok != rok || op != rop {
			t.Fatalf("writtenKeyCond(%q) = %q, %v; the reference says %q, %v", sql, op, ok, rop, rok)
		}
	})
}

func FuzzHasOr(f *testing.F) {
	for _, s := range []string{"a = 1 OR b = 2", "a=1\tor\nb=2", "color = ?", "orders.id = ?", "x OR", "OR", "(a)or(b)", "a_or_b", "a$or", "ör"} {
		f.Add(s)
	}
	word := regexp.MustCompile(`(?i)(?:^|[^A-Za-z0-9_$\x{80}-\x{10FFFF}])OR(?:$|[^A-Za-z0-9_$\x{80}-\x{10FFFF}])`)
	f.Fuzz(func(t *testing.T, sql string) {
		if got, want := hasOr(sql), word.MatchString(sql); got != want {
			t.Fatalf("hasOr(%q) = %v, want %v", sql, got, want)
		}
	})
}

func TestKeyFixed(t *testing.T) {
	one := &model{cols: []column{{name: "id"}, {name: "qty"}}, npk: 1}
	two := &model{cols: []column{{name: "a"}, {name: "b"}, {name: "qty"}}, npk: 2}
	col := func(table, name string) clause.Column { return clause.Column{Table: table, Name: name} }
	sub := &gorm.DB{}
	for _, c := range []struct {
		name  string
		m     *model
		where []clause.Expression
		rows  int
		ok    bool
	}{
		{"Eq by name", one, []clause.Expression{clause.Eq{Column: "id", Value: 5}}, 1, true},
		{"Eq by column of the current table", one, []clause.Expression{clause.Eq{Column: col(clause.CurrentTable, "id"), Value: 5}}, 1, true},
		{"Eq by column of the table", one, []clause.Expression{clause.Eq{Column: col("items", "id"), Value: 5}}, 1, true},
		{"Eq by column of another table", one, []clause.Expression{clause.Eq{Column: col("other", "id"), Value: 5}}, 0, false},
		{"Eq on another column", one, []clause.Expression{clause.Eq{Column: "qty", Value: 5}}, 0, false},
		{"Eq to a list GORM writes as IN", one, []clause.Expression{clause.Eq{Column: "id", Value: []int64{1, 2, 3}}}, 3, true},
		{"Eq to a list GORM cannot write", one, []clause.Expression{clause.Eq{Column: "id", Value: []float64{1, 2}}}, 0, false},
		{"Eq to an expression", one, []clause.Expression{clause.Eq{Column: "id", Value: clause.Expr{SQL: "qty"}}}, 0, false},
		{"Eq to a column", one, []clause.Expression{clause.Eq{Column: "id", Value: col("", "qty")}}, 0, false},
		{"Eq to a subquery", one, []clause.Expression{clause.Eq{Column: "id", Value: sub}}, 0, false},
		{"IN", one, []clause.Expression{clause.IN{Column: col("items", "id"), Values: []any{1, 2}}}, 2, true},
		{"IN with an expression", one, []clause.Expression{clause.IN{Column: "id", Values: []any{1, clause.Expr{SQL: "qty"}}}}, 0, false},
		{"the fewest rows of two", one, []clause.Expression{clause.IN{Column: "id", Values: []any{1, 2, 3}}, clause.Eq{Column: "id", Value: 2}}, 1, true},
		{"key and another condition", one, []clause.Expression{clause.Expr{SQL: "qty > ?", Vars: []any{1}}, clause.Eq{Column: "id", Value: 2}}, 1, true},
		{"key OR another", one, []clause.Expression{clause.Eq{Column: "id", Value: 2}, clause.OrConditions{Exprs: []clause.Expression{clause.Eq{Column: "qty", Value: 1}}}}, 0, false},
		{"written OR", one, []clause.Expression{clause.Eq{Column: "id", Value: 2}, clause.Expr{SQL: "qty = 1\nOR qty = 2"}}, 0, false},
		{"written key", one, []clause.Expression{clause.Expr{SQL: "id = ?", Vars: []any{4}}}, 1, true},
		{"written key IN a list", one, []clause.Expression{clause.Expr{SQL: "id IN ?", Vars: []any{[]int{1, 2}}}}, 2, true},
		{"written key = a list", one, []clause.Expression{clause.Expr{SQL: "id = ?", Vars: []any{[]int{1, 2}}}}, 0, false},
		{"written key IN one value", one, []clause.Expression{clause.Expr{SQL: "id IN ?", Vars: []any{1}}}, 0, false},
		{"written key = bytes", one, []clause.Expression{clause.Expr{SQL: "id = ?", Vars: []any{[]byte("k")}}}, 1, true},
		{"composite, each column", two, []clause.Expression{clause.Eq{Column: "a", Value: 1}, clause.Eq{Column: "b", Value: 2}}, 1, true},
		{"composite, one column", two, []clause.Expression{clause.Eq{Column: "a", Value: 1}}, 0, false},
		{"composite, a list on one column", two, []clause.Expression{clause.Eq{Column: "a", Value: []int{1, 2}}, clause.Eq{Column: "b", Value: 2}}, 0, false},
		{"composite IN", two, []clause.Expression{clause.IN{Column: []clause.Column{col("", "b"), col("", "a")}, Values: []any{[]any{1, 2}}}}, 1, true},
		{"composite IN on one column twice", two, []clause.Expression{clause.IN{Column: []clause.Column{col("", "a"), col("", "a")}, Values: []any{[]any{1, 2}}}}, 0, false},
		{"no condition", one, nil, 0, false},
	} {
		rows, ok := c.m.keyFixed("items", c.where)
		if ok != c.ok || ok && rows != c.rows {
			t.Errorf("%s: keyFixed = %d, %v; want %d, %v", c.name, rows, ok, c.rows, c.ok)
		}
	}
}
