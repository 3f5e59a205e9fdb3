package ginaudit

import (
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
