package core

import (
	"syscall"
	"time"
)

// tcpUserTimeout is TCP_USER_TIMEOUT from linux/tcp.h; the syscall package does not name it.
const tcpUserTimeout = 0x12

// userTimeoutControl sets TCP_USER_TIMEOUT: how long transmitted data may stay unacknowledged
// before the kernel drops the connection, so that a write into a black hole fails within d instead
// of after the kernel's retransmissions give up (about 15 minutes).
func userTimeoutControl(d time.Duration) func(network, address string, c syscall.RawConn) error {
	ms := int(d.Milliseconds())
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, ms)
		})
		if err != nil {
			return err
		}
		return serr
	}
}
