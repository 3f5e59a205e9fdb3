package shop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"gorm.io/gorm"
)

func TestFailure(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		msg    string
		record bool
	}{
		{ErrInsufficientCredit, http.StatusConflict, "insufficient credit; nothing was moved", true},
		{fmt.Errorf("transfer: %w", ErrNoSuchCustomer), http.StatusNotFound, "no such customer", false},
		{gorm.ErrRecordNotFound, http.StatusNotFound, "not found", true},
		{errors.New("connection reset"), http.StatusInternalServerError, "internal error", true},
	} {
		status, msg, record := Failure(c.err)
		if status != c.status || msg != c.msg || record != c.record {
			t.Errorf("Failure(%v) = %d %q %v, want %d %q %v", c.err, status, msg, record, c.status, c.msg, c.record)
		}
	}
}

func TestWithSearchPath(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u@h:5432/db?sslmode=disable": "postgres://u@h:5432/db?search_path=s1&sslmode=disable",
		"host=h dbname=db":                       "host=h dbname=db search_path=s1",
	} {
		got, err := withSearchPath(in, "s1")
		if err != nil || got != want {
			t.Errorf("withSearchPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := withSearchPath("postgres://u@h:bad/db", "s1"); err == nil || !strings.Contains(err.Error(), "invalid database URL") {
		t.Errorf("a bad URL gave %v", err)
	}
}

func TestRunRefusesAnIncompleteExample(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), Example{Name: "x"}, nil, &out, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "needs a Name and a Handler") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := Run(context.Background(), Example{Name: "x"}, []string{"-nosuchflag"}, &out, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "flag provided but not defined: -nosuchflag") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestSetupNeedsAnAudience(t *testing.T) {
	if _, err := Setup(context.Background(), Config{DatabaseURL: "postgres://postgres@127.0.0.1:5432/test"}); err == nil ||
		!strings.Contains(err.Error(), "Audience") {
		t.Fatalf("Setup without an audience: %v", err)
	}
}
