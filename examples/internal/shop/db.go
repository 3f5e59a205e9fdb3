package shop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditkit/auditkit/internal/tmppg"
)

const startHint = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"

// ping connects once, briefly, to tell "PostgreSQL is not there" apart from every other problem.
// Only a failure to reach the server (refused, timed out, unknown host) is ErrUnreachable; a
// server that answered and refused (a missing database, a wrong password) says so with its fix.
func ping(ctx context.Context, databaseURL string) error {
	pc, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("invalid database URL: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err == nil {
		return conn.Close(ctx)
	}
	where := fmt.Sprintf("%s:%d", pc.Host, pc.Port)
	// The server's own answer comes first: with several addresses for one host (localhost), one
	// may be refused while another answers.
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "3D000": // invalid_catalog_name
			return fmt.Errorf("database %q does not exist on the PostgreSQL at %s; create it with: createdb -h %s -p %d -U %s %s (or name another database with -db)",
				pc.Database, where, pc.Host, pc.Port, pc.User, pc.Database)
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return fmt.Errorf("the PostgreSQL at %s refused user %q: %s; fix the user or password in -db (AUDIT_DATABASE_URL), or the server's pg_hba.conf",
				where, pc.User, pgErr.Message)
		}
		return fmt.Errorf("the PostgreSQL at %s refused the connection: %s (SQLSTATE %s)", where, pgErr.Message, pgErr.Code)
	}
	if dialFailed(err) {
		return fmt.Errorf("%w at %s (%s); %s", ErrUnreachable, where, shortReason(err), reachHint(pc.Host, err))
	}
	return fmt.Errorf("cannot connect to the PostgreSQL at %s: %s", where, shortReason(err))
}

// dialFailed reports whether err means that no server could be reached: refused, timed out, or a
// host name that does not resolve.
func dialFailed(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var netErr net.Error
	return errors.As(err, &opErr) && opErr.Op == "dial" || errors.As(err, &dnsErr) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &netErr) && netErr.Timeout()
}

// reachHint is the fix for an unreachable server: starting the local cluster, or checking the
// address when it is not this machine's.
func reachHint(host string, err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		return "check the host name in -db (AUDIT_DATABASE_URL)"
	case host == "localhost" || strings.HasPrefix(host, "/"):
		return startHint
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return startHint
	}
	return "check that it is running and that -db (AUDIT_DATABASE_URL) names the right host and port"
}

// shortReason is the last part of a connection error ("connection refused").
func shortReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// withSearchPath sets search_path in a URL or key=value DSN, so that GORM's unqualified table
// names land in the example's schema.
func withSearchPath(databaseURL, schemaName string) (string, error) {
	if strings.HasPrefix(databaseURL, "postgres://") || strings.HasPrefix(databaseURL, "postgresql://") {
		u, err := url.Parse(databaseURL)
		if err != nil {
			return "", fmt.Errorf("invalid database URL: %w", err)
		}
		q := u.Query()
		q.Set("search_path", schemaName)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return databaseURL + " search_path=" + schemaName, nil
}

// localDatabase makes a first run work without set-up when no database was configured: a local
// server without the database gets it created, and with nothing answering on 127.0.0.1:5432 a
// throw-away cluster is started from the local PostgreSQL installation (stop removes it). It
// returns the URL to use; name is the example's, for its messages.
func localDatabase(ctx context.Context, name, dbURL string, stderr io.Writer) (string, func(), error) {
	if tmppg.Listening(tmppg.DefaultAddr, 2*time.Second) {
		conn, err := pgx.Connect(ctx, dbURL)
		if err == nil {
			_ = conn.Close(ctx)
		} else if tmppg.MissingDatabase(err) {
			if created, err := tmppg.CreateDatabase(ctx, dbURL); err != nil {
				return "", nil, fmt.Errorf("creating the database of %s: %w", dbURL, err)
			} else if created {
				fmt.Fprintf(stderr, "%s example: created the database of %s\n", name, dbURL)
			}
		}
		return dbURL, func() {}, nil // any other problem is reported by setup, with its fix
	}
	c, err := tmppg.Start(ctx)
	if err != nil {
		if errors.Is(err, tmppg.ErrNotInstalled) {
			return "", nil, fmt.Errorf("nothing answers on %s and %w", tmppg.DefaultAddr, err)
		}
		return "", nil, fmt.Errorf("nothing answers on %s, and a throw-away PostgreSQL could not be started: %w", tmppg.DefaultAddr, err)
	}
	fmt.Fprintf(stderr, "%s example: nothing answers on %s; using a throw-away PostgreSQL cluster on 127.0.0.1:%d, removed on exit\n",
		name, tmppg.DefaultAddr, c.Port)
	return c.URL, c.Stop, nil
}
