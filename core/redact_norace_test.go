//go:build !race

package core_test

// rdRace is true when the race detector is on: it slows code unevenly, so timing tests do not
// judge then.
const rdRace = false
