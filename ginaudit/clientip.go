package ginaudit

import (
	"net/netip"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
)

// TrustProxies applies cfg.TrustedProxies to e with SetTrustedProxies, so that c.ClientIP() in the
// application's handlers agrees with the address the middleware records. An empty list trusts no
// proxy: c.ClientIP() is then the socket's peer address, and X-Forwarded-For is ignored.
//
// Gin's default trusts every proxy, so without this call any client can choose the address
// c.ClientIP() returns by sending X-Forwarded-For. The middleware does not depend on the engine's
// setting (it applies Config.TrustedProxies itself, see Options.ClientIP); call TrustProxies once
// when building the engine:
//
//	r := gin.New()
//	if err := ginaudit.TrustProxies(r, cfg); err != nil { ... }
//
// Gin's TrustedPlatform header (for example gin.PlatformCloudflare) is believed unconditionally
// by c.ClientIP(); TrustProxies leaves it as it is.
func TrustProxies(e *gin.Engine, cfg core.Config) error {
	list := cfg.TrustedProxies
	if list == nil {
		list = []string{}
	}
	return e.SetTrustedProxies(list)
}

// parseProxy parses an address or CIDR prefix of Config.TrustedProxies.
func parseProxy(s string) (netip.Prefix, error) {
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

// addr returns the client address to record.
func (m *middleware) addr(st *reqState, c *gin.Context) netip.Addr {
	if m.clientIP != nil {
		a, _ := netip.ParseAddr(strings.TrimSpace(m.clientIP(c)))
		return a.Unmap()
	}
	remote := remoteAddr(c.Request.RemoteAddr)
	if len(m.proxies) == 0 || !m.trusted(remote) {
		return remote
	}
	for _, h := range [...]string{"X-Forwarded-For", "X-Real-Ip"} {
		if a, ok := m.walkForwarded(c.Request.Header[h]); ok {
			if a != remote {
				st.setMeta(MetaRemoteIP, remote.String())
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

func (m *middleware) trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range m.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// walkForwarded walks the hops of X-Forwarded-For style header values from the right (the hop
// added by the nearest proxy) and returns the first that is not a trusted proxy, or the leftmost
// one. An unparsable hop ends the walk without a result, as in Gin.
func (m *middleware) walkForwarded(values []string) (netip.Addr, bool) {
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for {
			j := strings.LastIndexByte(v, ',')
			a, err := netip.ParseAddr(strings.TrimSpace(v[j+1:]))
			if err != nil {
				return netip.Addr{}, false
			}
			a = a.Unmap()
			if (i == 0 && j < 0) || !m.trusted(a) {
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
