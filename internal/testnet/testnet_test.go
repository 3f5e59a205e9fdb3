package testnet_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/auditkit/auditkit/internal/testnet"
)

// TestFreePortIsBelowOutgoingPorts: the port can be listened on, and it is below the range the
// kernel hands to outgoing connections.
func TestFreePortIsBelowOutgoingPorts(t *testing.T) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(strings.TrimSpace(string(b)), &lo)
	}
	for range 20 {
		port := testnet.FreePort(t)
		if port < 10000 || port >= lo {
			t.Fatalf("port %d outside [10000, %d)", port, lo)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("port %d: %v", port, err)
		}
		l.Close()
	}
}

// TestClosedAddrRefusesAndCannotBeTaken: connections to the address are refused, and no listener
// can take its port while the test runs.
func TestClosedAddrRefusesAndCannotBeTaken(t *testing.T) {
	addr := testnet.ClosedAddr(t)
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("a connection to %s was accepted", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("a listener took %s", addr)
	}
}
