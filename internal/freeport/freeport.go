// Package freeport draws loopback TCP ports for servers that are started, and bind their port,
// after the port is chosen (a child process, a throw-away PostgreSQL).
//
// A port the kernel hands out for "127.0.0.1:0" comes from the range it also hands to outgoing
// connections: released again until the server binds it, it can be taken in between as the local
// port of any process's connection. Loopback draws its ports from below that range instead.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
)

// lowest is the lowest port drawn: above the ports of well-known services.
const lowest = 10000

// Loopback returns a loopback TCP port nobody listens on now, below the range the kernel hands to
// outgoing connections (net.ipv4.ip_local_port_range), so that no connection takes it before the
// caller's server binds it. Ports are drawn at random, so that programs choosing ports at the same
// time rarely draw the same one; a caller whose server still finds its port taken can draw again.
func Loopback() (int, error) {
	hi := outgoingStart()
	for range 100 {
		port := lowest + rand.IntN(hi-lowest)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken
		}
		if err := l.Close(); err != nil {
			return 0, err
		}
		return port, nil
	}
	return 0, errors.New("freeport: no free loopback port below the outgoing range")
}

// outgoingStart returns the first port of the range the kernel hands to outgoing connections:
// the first number of /proc/sys/net/ipv4/ip_local_port_range on Linux, or 32768 (Linux's
// default) where that cannot be read or leaves too few ports below it.
func outgoingStart() int {
	const fallback = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo < lowest+1000 {
		return fallback
	}
	return lo
}
