package natsaudit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamOptions configure the stream EnsureStream creates or updates.
type StreamOptions struct {
	// Name is the stream's name. Default DefaultStream.
	Name string
	// SubjectPrefix is the prefix of the subjects the stream takes: it stores prefix + ".>".
	// Default DefaultSubjectPrefix.
	SubjectPrefix string
	// Replicas is how many servers of a JetStream cluster keep each message: 1 on a single
	// server, 3 to survive the loss of one server of three. Default 1.
	Replicas int
	// DuplicateWindow is how long JetStream remembers a message id to drop a record published
	// again. Default 2 minutes. A record published again after the window (a spool replayed
	// after a longer outage) is stored in the stream twice and skipped by the ingest consumer,
	// which stores every record id once.
	DuplicateWindow time.Duration
	// MaxAge drops messages older than this, whether they were ingested or not. Default 7 days:
	// the longest an ingest outage can last without losing records.
	MaxAge time.Duration
	// MaxBytes bounds the stream's storage; zero means no bound. When it is reached the
	// stream refuses new messages (the writers then keep records in their spools) rather than
	// dropping old ones that may not have been ingested yet.
	MaxBytes int64
	// Memory keeps the stream in memory rather than on disk. Messages are then lost when the
	// servers restart; only for tests.
	Memory bool
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.Name == "" {
		o.Name = DefaultStream
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 7 * 24 * time.Hour
	}
	return o
}

// EnsureStream creates the stream the Sink publishes to, or updates its limits when it exists,
// and returns it. The stream keeps messages until MaxAge (limits retention, so that ingest
// consumers and live readers may all read them) and refuses new ones when MaxBytes is reached.
func EnsureStream(ctx context.Context, nc *nats.Conn, opts StreamOptions) (jetstream.Stream, error) {
	if nc == nil {
		return nil, errors.New("natsaudit: EnsureStream: nil NATS connection")
	}
	opts = opts.withDefaults()
	if err := checkName("stream", opts.Name); err != nil {
		return nil, err
	}
	if err := checkPrefix(opts.SubjectPrefix); err != nil {
		return nil, err
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("natsaudit: EnsureStream: negative MaxBytes %d", opts.MaxBytes)
	}
	if opts.DuplicateWindow > opts.MaxAge {
		return nil, fmt.Errorf("natsaudit: EnsureStream: the duplicate window %s is longer than MaxAge %s", opts.DuplicateWindow, opts.MaxAge)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsaudit: %w", err)
	}
	storage := jetstream.FileStorage
	if opts.Memory {
		storage = jetstream.MemoryStorage
	}
	maxBytes := opts.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        opts.Name,
		Description: "auditkit audit records",
		Subjects:    []string{opts.SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      opts.MaxAge,
		MaxBytes:    maxBytes,
		MaxMsgs:     -1,
		Storage:     storage,
		Replicas:    opts.Replicas,
		Duplicates:  opts.DuplicateWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("natsaudit: creating or updating stream %s: %w", opts.Name, err)
	}
	return s, nil
}
