//go:build !race

package ginaudit_test

// ginContextRaces: see ginctx_race_test.go.
const ginContextRaces = false
