package ginaudit_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/schema"
)

// The middleware in an application: the tables and the writer from one configuration, the
// engine's proxy list from the same configuration, handlers that pass the request's context to
// the ORM, and a shutdown that loses no record.
func ExampleMiddleware() {
	// ctx is cancelled on Ctrl-C or SIGTERM.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := core.ConfigFromEnv() // AUDIT_DATABASE_URL, AUDIT_JWT_SECRET, AUDIT_TRUSTED_PROXIES, ...
	if err != nil {
		log.Fatal(err)
	}
	if err := schema.CreateTablesFor(ctx, cfg); err != nil {
		log.Fatal(err)
	}
	w, err := core.Open(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}

	r := gin.New()
	if err := ginaudit.TrustProxies(r, cfg); err != nil {
		log.Fatal(err)
	}
	r.Use(gin.Recovery(), ginaudit.Middleware(ginaudit.Options{Writer: w, Config: cfg}))
	r.POST("/orders", func(c *gin.Context) {
		// db.WithContext(c.Request.Context()).Create(&order) joins this request's record.
		c.Status(http.StatusCreated)
	})

	srv := &http.Server{Addr: ":8080", Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
			stop()
		}
	}()
	<-ctx.Done()

	// ctx is cancelled by now, so shutting down takes a context of its own: first the server, so
	// that no request adds records any more, then the writer, which writes what it accepted.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Print(err)
	}
	if err := w.Close(shutdownCtx); err != nil {
		log.Print(err)
	}
}

// A Verifier used on its own, for example by an API that authorises with the same tokens.
func ExampleNewVerifier() {
	secret := "an-hmac-secret-of-at-least-32-bytes"
	v, err := ginaudit.NewVerifier(context.Background(), core.JWTConfig{Secret: secret, Issuer: "https://idp.example"},
		map[string]core.ActorType{"ops": core.ActorPlatformAdmin})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	sign := func(exp time.Time) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"iss": "https://idp.example", "sub": "u-7", "actor_type": "ops", "tenant_id": "t-42",
			"exp": exp.Unix(),
		}).SignedString([]byte(secret))
		if err != nil {
			fmt.Println(err)
		}
		return tok
	}
	id, err := v.Verify(context.Background(), sign(time.Now().Add(time.Hour)))
	fmt.Println(id.Actor.ID, id.Actor.Type, id.Actor.Auth, id.Tenant.ID, err)

	_, err = v.Verify(context.Background(), sign(time.Now().Add(-time.Hour)))
	fmt.Println(errors.Is(err, ginaudit.ErrExpired), errors.Is(err, ginaudit.ErrInvalidToken))
	// Output:
	// u-7 platform_admin jwt:HS256 t-42 <nil>
	// true true
}

// Without TrustProxies, Gin believes any client's X-Forwarded-For.
func ExampleTrustProxies() {
	r := gin.New()
	r.GET("/ip", func(c *gin.Context) { c.String(http.StatusOK, c.ClientIP()) })
	ask := func() string {
		req := httptest.NewRequest("GET", "/ip", nil)
		req.RemoteAddr = "203.0.113.7:4711"
		req.Header.Set("X-Forwarded-For", "1.2.3.4")
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		return rec.Body.String()
	}
	fmt.Println("gin's default:", ask())
	if err := ginaudit.TrustProxies(r, core.Config{}); err != nil { // no proxy trusted
		log.Fatal(err)
	}
	fmt.Println("after TrustProxies:", ask())
	// Output:
	// gin's default: 1.2.3.4
	// after TrustProxies: 203.0.113.7
}
