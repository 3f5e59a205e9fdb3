// Package testnet gives tests loopback ports that stay as the test needs them while other
// processes open and close connections.
//
// A port the kernel hands out for "127.0.0.1:0" comes from the range it also hands to outgoing
// connections. Released again for a server that starts later, such a port can be taken in between
// as the local port of any process's connection (tests of other packages run at the same time),
// and the server then fails to bind it. FreePort draws its ports from below that range instead,
// and ClosedAddr keeps its port bound, so that no other socket can take it.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"
)

// lowestPort is the lowest port FreePort draws: above the ports of well-known services.
const lowestPort = 10000

// FreePort returns a loopback TCP port nobody listens on now, below the range the kernel hands to
// outgoing connections (net.ipv4.ip_local_port_range), so that no connection takes it before the
// caller's server binds it. Ports are drawn at random, so that tests running at the same time
// rarely draw the same one; a caller whose server still finds its port taken can draw again.
func FreePort(tb testing.TB) int {
	tb.Helper()
	hi := ephemeralStart()
	for range 100 {
		port := lowestPort + rand.IntN(hi-lowestPort)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken
		}
		if err := l.Close(); err != nil {
			tb.Fatal(err)
		}
		return port
	}
	tb.Fatalf("no free loopback port between %d and %d", lowestPort, hi)
	return 0
}

// FreeAddr is FreePort as an address, 127.0.0.1:port.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(tb))
}

// ephemeralStart returns the first port of the range the kernel hands to outgoing connections:
// the first number of /proc/sys/net/ipv4/ip_local_port_range on Linux, 32768 (Linux's default)
// where that cannot be read or leaves too few ports below it.
func ephemeralStart() int {
	const fallback = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo < lowestPort+1000 {
		return fallback
	}
	return lo
}
