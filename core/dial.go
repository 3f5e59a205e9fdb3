package core

import (
	"context"
	"net"
	"time"
)

// dialOptions are the socket settings of the writer's connections (see Config.ConnectTimeout,
// Config.TCPKeepAlive and Config.TCPUserTimeout). A negative keepAlive or userTimeout turns the
// setting off.
type dialOptions struct {
	timeout     time.Duration
	keepAlive   time.Duration
	userTimeout time.Duration
}

// dialer returns the net.Dialer for network: TCP connections get keepalive probes every
// keepAlive (3 unanswered probes drop the connection) and, where the system has it, a
// TCP_USER_TIMEOUT; Unix sockets get only the timeout.
func (o dialOptions) dialer(network string) *net.Dialer {
	d := &net.Dialer{Timeout: o.timeout}
	if !isTCP(network) {
		return d
	}
	if o.keepAlive > 0 {
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: o.keepAlive, Interval: o.keepAlive, Count: 3}
	} else {
		d.KeepAlive = -1
	}
	if o.userTimeout > 0 {
		d.Control = userTimeoutControl(o.userTimeout)
	}
	return d
}

// dial has the signature of pgconn.DialFunc.
func (o dialOptions) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return o.dialer(network).DialContext(ctx, network, addr)
}

func isTCP(network string) bool {
	switch network {
	case "tcp", "tcp4", "tcp6":
		return true
	}
	return false
}
