package auditmw

import (
	"net/http"
	"net/netip"
	"strings"
)

// ParseProxy parses an address or CIDR prefix of Config.TrustedProxies.
func ParseProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr())).Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// unmapBits is how many prefix bits an IPv4-mapped IPv6 prefix loses when unmapped.
func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// ParseClientIP parses an address an application's ClientIP function returned.
func ParseClientIP(s string) netip.Addr {
	a, _ := netip.ParseAddr(strings.TrimSpace(s))
	return a.Unmap()
}

// ClientAddr returns the client address to record under Config.TrustedProxies: the socket's peer
// address, unless that peer is a trusted proxy, in which case X-Forwarded-For (then X-Real-IP) is
// walked from the right and the first address that is not a trusted proxy is returned (Gin's
// algorithm). When it differs from the peer, the peer is noted in the metadata (remote_ip).
func (e *Engine) ClientAddr(st *State, req *http.Request) netip.Addr {
	remote := remoteAddr(req.RemoteAddr)
	if len(e.proxies) == 0 || !e.trusted(remote) {
		return remote
	}
	for _, h := range [...]string{"X-Forwarded-For", "X-Real-Ip"} {
		if a, ok := e.walkForwarded(req.Header[h]); ok {
			if a != remote {
				st.SetMeta(MetaRemoteIP, remote.String())
			}
			return a
		}
	}
	return remote
}

// remoteAddr parses http.Request.RemoteAddr ("ip:port", or a bare ip).
func remoteAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	a, _ := netip.ParseAddr(s)
	return a.Unmap().WithZone("")
}

func (e *Engine) trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range e.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// walkForwarded walks the hops of X-Forwarded-For style header values from the right (the hop
// added by the nearest proxy) and returns the first that is not a trusted proxy, or the leftmost
// one. An unparsable hop ends the walk without a result, as in Gin.
func (e *Engine) walkForwarded(values []string) (netip.Addr, bool) {
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for {
			j := strings.LastIndexByte(v, ',')
			a, err := netip.ParseAddr(strings.TrimSpace(v[j+1:]))
			if err != nil {
				return netip.Addr{}, false
			}
			a = a.Unmap()
			if (i == 0 && j < 0) || !e.trusted(a) {
				return a, true
			}
			if j < 0 {
				break
			}
			v = v[:j]
		}
	}
	return netip.Addr{}, false
}
