// Package entest holds the ent client generated for the entaudit tests, with the entauditgen
// extension. Regenerate it with go generate after changing a schema.
package entest

//go:generate go run -mod=mod entc.go
