//go:build !unix

package testnet

import "testing"

// ClosedAddr returns a loopback address, 127.0.0.1:port, where nothing listens now. Where sockets
// cannot be bound without listening, the port is only free: FreePort's, below the ports the
// kernel hands to outgoing connections.
func ClosedAddr(tb testing.TB) string {
	tb.Helper()
	return FreeAddr(tb)
}
