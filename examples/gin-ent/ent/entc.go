//go:build ignore

package main

import (
	"log"

	"entgo.io/ent/entc"
	"entgo.io/ent/entc/gen"

	"github.com/auditkit/auditkit/entaudit/entauditgen"
)

func main() {
	// The one line auditing adds to the code generation: entc.Extensions(entauditgen.Extension()).
	if err := entc.Generate("./schema", &gen.Config{}, entc.Extensions(entauditgen.Extension())); err != nil {
		log.Fatalf("running ent codegen: %v", err)
	}
}
