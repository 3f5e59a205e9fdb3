//go:build ignore

package main

import (
	"log"

	"entgo.io/ent/entc"
	"entgo.io/ent/entc/gen"

	"github.com/auditkit/auditkit/entaudit/entauditgen"
)

func main() {
	err := entc.Generate("./schema", &gen.Config{
		Features: []gen.Feature{gen.FeatureUpsert, gen.FeatureExecQuery},
	}, entc.Extensions(entauditgen.Extension()))
	if err != nil {
		log.Fatalf("running ent codegen: %v", err)
	}
}
