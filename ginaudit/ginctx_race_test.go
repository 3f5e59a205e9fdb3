//go:build race

package ginaudit_test

// ginContextRaces: under the race detector the tests leave out ORM calls given the *gin.Context
// itself. database/sql watches a query's context from a goroutine of its own (Rows.awaitDone),
// which can call the gin.Context's Done after the handler returned and gin reused the context
// for the next request: a data race in gin and database/sql that plain GORM or ent show as well
// (gin-gonic/gin#3931), not one of the audit code. The same tests run them without -race.
const ginContextRaces = true
