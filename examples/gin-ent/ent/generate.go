// Package ent is the ent client of the gin-ent example, generated with the entaudit extension.
package ent

//go:generate go run -mod=mod entc.go
