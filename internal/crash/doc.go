// Package crash holds the fault tests that end a process abruptly: a Writer with a spool killed
// with SIGKILL again and again under load, and the Gin + GORM example stopped with SIGTERM while
// requests are in flight. Each checks from the database that every record accepted before the
// end is stored exactly once.
//
// It also holds the benchmarks that compare the spool's sync modes with the memory queue:
//
//	go test -run '^$' -bench WriterModes -count 6 ./internal/crash/
//	go test -run '^$' -bench EnqueueLatency ./internal/crash/
//
// The package has no API; its tests run against the PostgreSQL of internal/pgtest.
package crash
