package core

import (
	"context"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// sockopt reads an integer socket option of conn.
func sockopt(t *testing.T, conn net.Conn, level, opt int) int {
	t.Helper()
	raw, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// TestDialSetsTCPOptions reads back, from the kernel, the options the writer's dialler sets:
// TCP_USER_TIMEOUT in milliseconds and keepalive probes after TCPKeepAlive, every TCPKeepAlive, 3
// of them; "off" leaves both off.
func TestDialSetsTCPOptions(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	const (
		tcpKeepIdle  = 0x4
		tcpKeepIntvl = 0x5
		tcpKeepCnt   = 0x6
	)
	tests := []struct {
		name                                     string
		opts                                     dialOptions
		userTimeout, keepAlive, idle, intvl, cnt int
	}{
		{"on", dialOptions{timeout: time.Second, keepAlive: 3 * time.Second, userTimeout: 7 * time.Second}, 7000, 1, 3, 3, 3},
		{"defaults", dialOptions{timeout: time.Second, keepAlive: DefaultTCPKeepAlive, userTimeout: DefaultTCPUserTimeout}, 10000, 1, 5, 5, 3},
		{"off", dialOptions{timeout: time.Second, keepAlive: -1, userTimeout: -1}, 0, 0, -1, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tt.opts.dial(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if got := sockopt(t, conn, syscall.IPPROTO_TCP, tcpUserTimeout); got != tt.userTimeout {
				t.Errorf("TCP_USER_TIMEOUT = %d, want %d", got, tt.userTimeout)
			}
			if got := sockopt(t, conn, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); got != tt.keepAlive {
				t.Errorf("SO_KEEPALIVE = %d, want %d", got, tt.keepAlive)
			}
			if tt.keepAlive == 0 {
				return
			}
			for _, o := range []struct {
				name      string
				opt, want int
			}{{"TCP_KEEPIDLE", tcpKeepIdle, tt.idle}, {"TCP_KEEPINTVL", tcpKeepIntvl, tt.intvl}, {"TCP_KEEPCNT", tcpKeepCnt, tt.cnt}} {
				if got := sockopt(t, conn, syscall.IPPROTO_TCP, o.opt); got != o.want {
					t.Errorf("%s = %d, want %d", o.name, got, o.want)
				}
			}
		})
	}
}

// TestDialUnixSocket: a Unix-socket host is dialled without TCP options, which would fail on it.
func TestDialUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".s.PGSQL.5432")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	conn, err := dialOptions{timeout: time.Second, keepAlive: time.Second, userTimeout: time.Second}.dial(context.Background(), "unix", path)
	if err != nil {
		t.Fatalf("dialling a Unix socket: %v", err)
	}
	conn.Close()
}
