// Package faults injects network and database faults between the audit writer and PostgreSQL, so
// that tests can hold the writer's promise (no accepted record lost unless counted as dropped,
// none stored twice) against black holes, refused connections, cut connections and connections
// cut in the middle of a COPY or right after the server committed it. The ORM integrations' tests
// use it to hold back the reply to a COMMIT the server made, so that the application gives up on
// a transaction that committed.
//
//	p, err := faults.Start("127.0.0.1:5432")
//	...
//	url := p.URL(databaseURL) // connect the writer through the proxy
//	p.Blackhole()             // later: p.Pass(), p.Refuse(), p.Cut(), p.CutMidCopy(1, 3), p.HoldCommitReply(1)
package faults

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
)

// Mode is what the proxy does with connections.
type Mode int32

const (
	// Pass forwards both directions.
	Pass Mode = iota
	// Blackhole accepts new connections and forwards nothing in either direction, on new and
	// existing connections alike; what arrives is held (at most one message per direction) and
	// forwarded when the mode returns to Pass.
	Blackhole
	// Refuse closes the listener: new connections are refused until the mode changes. Existing
	// connections are left as they are (Cut closes them).
	Refuse
)

// String returns "pass", "blackhole" or "refuse".
func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Blackhole:
		return "blackhole"
	case Refuse:
		return "refuse"
	}
	return fmt.Sprintf("Mode(%d)", int32(m))
}

// Counters say what the proxy did since it started.
type Counters struct {
	Accepted      uint64 // connections accepted
	Held          uint64 // connections accepted while in Blackhole
	Cut           uint64 // connections closed by Cut
	MidCopyCuts   uint64 // connections closed after the armed number of CopyData messages
	AfterCopyCuts uint64 // connections closed instead of delivering a COPY's CommandComplete
	CopyData      uint64 // CopyData messages forwarded from client to server
	CopyDone      uint64 // CommandComplete messages of a COPY forwarded to the client
	HeldCommits   uint64 // connections whose reply to COMMIT was held back (HoldCommitReply)
}

// Proxy is a TCP proxy to one PostgreSQL server whose behaviour can be switched at run time. It
// speaks enough of the PostgreSQL protocol (after the startup packet, every message is one type
// byte and an int32 length) to cut connections at chosen points of a COPY. Its methods are safe
// for concurrent use.
type Proxy struct {
	target string
	addr   string

	mu     sync.Mutex
	cond   *sync.Cond // signalled when mode changes or the proxy closes
	mode   Mode
	ln     net.Listener
	conns  map[*link]struct{}
	closed bool
	wg     sync.WaitGroup

	midCopyAfter atomic.Int64 // CopyData messages after which an armed mid-COPY cut happens
	midCopyLeft  atomic.Int64 // mid-COPY cuts still armed
	afterCopy    atomic.Int64 // after-COPY cuts still armed
	holdCommit   atomic.Int64 // COMMIT replies still to hold back

	accepted, held, cut, midCuts, afterCuts, copyData, copyDone, heldCommits atomic.Uint64
}

// link is one proxied connection: the client's socket and the server's.
type link struct {
	client, server net.Conn
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		_ = l.client.Close()
		_ = l.server.Close()
	})
}

// Start listens on 127.0.0.1 on a free port and forwards every connection to target
// (host:port), in mode Pass.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faults: listen: %w", err)
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), ln: ln, conns: make(map[*link]struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept(ln)
	return p, nil
}

// StartURL starts a proxy (as Start) to the server of databaseURL, a postgres:// URL, and
// returns it with databaseURL through it (see URL).
func StartURL(databaseURL string) (*Proxy, string, error) {
	pu, err := url.Parse(databaseURL)
	if err != nil {
		return nil, "", fmt.Errorf("faults: %w", err)
	}
	if pu.Host == "" {
		return nil, "", fmt.Errorf("faults: no server in %q", databaseURL)
	}
	target := pu.Host
	if pu.Port() == "" {
		target = net.JoinHostPort(pu.Hostname(), "5432")
	}
	p, err := Start(target)
	if err != nil {
		return nil, "", err
	}
	u, err := p.URL(databaseURL)
	if err != nil {
		_ = p.Close()
		return nil, "", err
	}
	return p, u, nil
}

// Addr returns the proxy's address, host:port. It stays the same across Refuse.
func (p *Proxy) Addr() string { return p.addr }

// URL returns the postgres:// URL u with its host and port replaced by the proxy's, and
// sslmode=disable: the proxy reads the protocol's messages, which TLS would hide.
func (p *Proxy) URL(u string) (string, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("faults: %w", err)
	}
	pu.Host = p.addr
	q := pu.Query()
	q.Set("sslmode", "disable")
	pu.RawQuery = q.Encode()
	return pu.String(), nil
}

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Pass forwards again: held data flows, and the listener is reopened after Refuse.
func (p *Proxy) Pass() error { return p.setMode(Pass) }

// Blackhole stops forwarding in both directions and holds new connections (see Blackhole).
func (p *Proxy) Blackhole() error { return p.setMode(Blackhole) }

// Refuse closes the listener so that new connections are refused (see Refuse).
func (p *Proxy) Refuse() error { return p.setMode(Refuse) }

func (p *Proxy) setMode(m Mode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("faults: proxy closed")
	}
	if m == Refuse && p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	if m != Refuse && p.ln == nil {
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("faults: reopen %s: %w", p.addr, err)
		}
		p.ln = ln
		p.wg.Add(1)
		go p.accept(ln)
	}
	p.mode = m
	p.cond.Broadcast()
	return nil
}

// Cut closes every current connection at once and returns how many it closed.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
	p.cut.Add(uint64(len(links)))
	return len(links)
}

// CutMidCopy arms times cuts: a connection that has forwarded afterN CopyData messages (counted
// from the start of its current COPY) since the cut was armed is closed on both sides before
// anything else goes through, so that the server sees the COPY break off.
func (p *Proxy) CutMidCopy(afterN, times int) {
	p.midCopyAfter.Store(int64(max(afterN, 1)))
	p.midCopyLeft.Store(int64(times))
}

// CutAfterCopy arms times cuts: the server's CommandComplete for a COPY is dropped and the
// connection closed on both sides, so that the server has committed the COPY (outside a
// transaction) and the client never learns it.
func (p *Proxy) CutAfterCopy(times int) { p.afterCopy.Store(int64(times)) }

// HoldCommitReply arms times holds: the server's reply to a COMMIT that committed (its
// CommandComplete and all that follows on that connection) is not forwarded, while the
// connection stays open, so that the server has committed and the client waits for an answer
// until it gives up (its context is cancelled or its deadline passes) and closes the connection.
// A cancel request the client sends then reaches a server that has nothing left to cancel.
func (p *Proxy) HoldCommitReply(times int) { p.holdCommit.Store(int64(times)) }

// Counters returns what the proxy did so far.
func (p *Proxy) Counters() Counters {
	return Counters{
		Accepted:      p.accepted.Load(),
		Held:          p.held.Load(),
		Cut:           p.cut.Load(),
		MidCopyCuts:   p.midCuts.Load(),
		AfterCopyCuts: p.afterCuts.Load(),
		CopyData:      p.copyData.Load(),
		CopyDone:      p.copyDone.Load(),
		HeldCommits:   p.heldCommits.Load(),
	}
}

// Conns returns how many connections are open through the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, closes every connection and waits for the proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	p.Cut()
	p.wg.Wait()
	return nil
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // the listener was closed (Refuse or Close)
		}
		p.accepted.Add(1)
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		l := &link{client: c, server: s}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			l.close()
			return
		}
		if p.mode == Blackhole {
			p.held.Add(1)
		}
		p.conns[l] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(l, true)
		go p.pipe(l, false)
	}
}

// pipe forwards one direction of l message by message until either side closes.
func (p *Proxy) pipe(l *link, fromClient bool) {
	defer p.wg.Done()
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.conns, l)
		p.mu.Unlock()
	}()
	src, dst := l.server, l.client
	if fromClient {
		src, dst = l.client, l.server
	}
	var copyData int64 // CopyData messages of the current COPY (client side)
	holding := false   // the reply to a COMMIT is held back: nothing more goes to the client
	startup := fromClient
	buf := make([]byte, 0, 8192)
	for {
		msg, typ, err := readMessage(src, buf[:0], startup)
		if err != nil {
			return
		}
		buf = msg[:0]
		startup = false
		if !p.waitPass() {
			return
		}
		if fromClient {
			switch typ {
			case 'd':
				copyData++
			case 'c', 'f':
				copyData = 0
			}
		} else if typ == 'C' && isCopyComplete(msg) && take(&p.afterCopy) {
			p.afterCuts.Add(1)
			return // the deferred close drops the message with the connection
		} else if typ == 'C' && !holding && isCommitComplete(msg) && take(&p.holdCommit) {
			p.heldCommits.Add(1)
			holding = true
		}
		if holding {
			continue // read on, so that the server is never blocked, until either side closes
		}
		if _, err := dst.Write(msg); err != nil {
			return
		}
		if fromClient && typ == 'd' {
			p.copyData.Add(1)
			if copyData >= p.midCopyAfter.Load() && take(&p.midCopyLeft) {
				p.midCuts.Add(1)
				return
			}
		}
		if !fromClient && typ == 'C' && isCopyComplete(msg) {
			p.copyDone.Add(1)
		}
	}
}

// waitPass blocks while the proxy is in Blackhole; it reports false when the proxy closed.
func (p *Proxy) waitPass() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.mode == Blackhole && !p.closed {
		p.cond.Wait()
	}
	return !p.closed
}

// take decrements n when it is positive and reports whether it did.
func take(n *atomic.Int64) bool {
	for {
		v := n.Load()
		if v <= 0 {
			return false
		}
		if n.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

// readMessage reads one protocol message into buf: the startup packet (int32 length, no type
// byte; also SSLRequest and CancelRequest) when startup is set, otherwise a type byte and an int32
// length. It returns the whole message and its type (0 for a startup packet).
func readMessage(r io.Reader, buf []byte, startup bool) ([]byte, byte, error) {
	hdr := 5
	if startup {
		hdr = 4
	}
	buf = append(buf[:0], make([]byte, hdr)...)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, 0, err
	}
	var typ byte
	n := binary.BigEndian.Uint32(buf[hdr-4:])
	if !startup {
		typ = buf[0]
	}
	if n < 4 || n > 1<<30 {
		return nil, 0, fmt.Errorf("faults: message %q of length %d", typ, n)
	}
	body := int(n) - 4
	if cap(buf) < hdr+body {
		nb := make([]byte, hdr, hdr+body)
		copy(nb, buf)
		buf = nb
	}
	buf = buf[:hdr+body]
	if _, err := io.ReadFull(r, buf[hdr:]); err != nil {
		return nil, 0, err
	}
	return buf, typ, nil
}

// isCommitComplete reports whether msg, a CommandComplete, is that of a COMMIT that committed
// (a COMMIT of a failed transaction completes as ROLLBACK).
func isCommitComplete(msg []byte) bool {
	return string(msg[5:]) == "COMMIT\x00"
}

// isCopyComplete reports whether msg, a CommandComplete, is a COPY's ("COPY n").
func isCopyComplete(msg []byte) bool {
	return len(msg) > 9 && string(msg[5:10]) == "COPY "
}
