package spool_test

import (
	"fmt"
	"log"
	"os"

	"github.com/auditkit/auditkit/internal/spool"
)

func Example() {
	dir, err := os.MkdirTemp("", "spool")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	sp, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	for _, rec := range []string{"first", "second"} {
		if _, err := sp.Append([]byte(rec)); err != nil {
			log.Fatal(err)
		}
	}

	// A consumer reads from Start (after a restart too) and acks what it has stored elsewhere.
	frames, next, err := sp.Read(sp.Start(), 100, 1<<20)
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range frames {
		fmt.Println(string(f.Payload))
		sp.Ack(f.Seg, 1)
	}
	fmt.Println(next == sp.End(), sp.Stats().Frames)
	if err := sp.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// first
	// second
	// true 0
}
