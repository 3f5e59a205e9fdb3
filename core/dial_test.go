package core

import (
	"testing"
	"time"
)

// TestPoolConfig: Open's pool dials with the configured timeouts, names its sessions
// auditkit-writer unless the URL names them, and holds one connection per worker plus one.
func TestPoolConfig(t *testing.T) {
	cfg := Config{DatabaseURL: "postgres://u@db.example/app", ConnectTimeout: 300 * time.Millisecond}.WithDefaults()
	pcfg, err := poolConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := pcfg.ConnConfig.RuntimeParams["application_name"]; got != WriterApplicationName {
		t.Errorf("application_name = %q", got)
	}
	if pcfg.ConnConfig.ConnectTimeout != 300*time.Millisecond || pcfg.ConnConfig.DialFunc == nil {
		t.Errorf("ConnectTimeout = %s, DialFunc set: %v", pcfg.ConnConfig.ConnectTimeout, pcfg.ConnConfig.DialFunc != nil)
	}
	if pcfg.MaxConns != 3 {
		t.Errorf("MaxConns = %d, want 3 (2 workers + 1)", pcfg.MaxConns)
	}

	cfg.DatabaseURL = "postgres://u@db.example/app?application_name=billing&pool_max_conns=9"
	if pcfg, err = poolConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if got := pcfg.ConnConfig.RuntimeParams["application_name"]; got != "billing" {
		t.Errorf("application_name = %q, want the URL's", got)
	}
	if pcfg.MaxConns != 9 {
		t.Errorf("MaxConns = %d, want the URL's 9", pcfg.MaxConns)
	}
}
