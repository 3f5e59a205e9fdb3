//go:build unix

package testnet

import (
	"fmt"
	"syscall"
	"testing"
)

// ClosedAddr returns a loopback address, 127.0.0.1:port, where connections are refused until the
// test ends: a TCP socket is bound to the port and never listens, so that no other socket can
// listen there meanwhile.
func ClosedAddr(tb testing.TB) string {
	tb.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		tb.Fatal(err)
	}
	syscall.CloseOnExec(fd)
	tb.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	in, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		tb.Fatalf("bound to %T", sa)
	}
	return fmt.Sprintf("127.0.0.1:%d", in.Port)
}
