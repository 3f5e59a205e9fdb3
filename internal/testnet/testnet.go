// Package testnet gives tests loopback ports that stay as the test needs them while other
// processes open and close connections.
//
// A port the kernel hands out for "127.0.0.1:0" comes from the range it also hands to outgoing
// connections. Released again for a server that starts later, such a port can be taken in between
// as the local port of any process's connection (tests of other packages run at the same time),
// and the server then fails to bind it. FreePort draws its ports from below that range instead
// (see freeport), and ClosedAddr keeps its port bound, so that no other socket can take it.
package testnet

import (
	"fmt"
	"testing"

	"github.com/auditkit/auditkit/internal/freeport"
)

// FreePort returns a loopback TCP port nobody listens on now, which no outgoing connection takes
// before the caller's server binds it (freeport.Loopback). A caller whose server still finds its
// port taken (another test drew it too) can draw again.
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := freeport.Loopback()
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// FreeAddr is FreePort as an address, 127.0.0.1:port.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(tb))
}
