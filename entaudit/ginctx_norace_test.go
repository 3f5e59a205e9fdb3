//go:build !race

package entaudit_test

// ginContextRaces: see ginctx_race_test.go.
const ginContextRaces = false
