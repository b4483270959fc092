// Package natsconn is how every service connects to NATS: one NATS config (the server URL and
// the security settings: credentials file, nkey seed, TLS) embedded in each service's
// envconfig Config, and one Connect with the options all of them share.
package natsconn

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultURL is CHAT_NATS_URL's default.
const DefaultURL = "nats://127.0.0.1:4222"

// NATS is embedded (anonymously, so the variables keep the CHAT_ prefix) in each
// service's Config and read by its main with envconfig.Process("chat", &cfg). Only URL
// set means a plain connection (the URL may still carry user:password or use tls://).
type NATS struct {
	// URL is the NATS server or servers, comma-separated (CHAT_NATS_URL).
	URL string `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222"`
	// Creds is a NATS credentials file (user JWT + nkey seed) (CHAT_NATS_CREDS).
	Creds string `envconfig:"NATS_CREDS"`
	// NKeySeedFile is a file holding a user nkey seed (CHAT_NATS_NKEY_SEED_FILE).
	NKeySeedFile string `envconfig:"NATS_NKEY_SEED_FILE"`
	// TLSCA is a PEM file of CAs to verify the server with (CHAT_NATS_TLS_CA).
	TLSCA string `envconfig:"NATS_TLS_CA"`
	// TLSCert and TLSKey are the client certificate and key for mutual TLS
	// (CHAT_NATS_TLS_CERT, CHAT_NATS_TLS_KEY).
	TLSCert string `envconfig:"NATS_TLS_CERT"`
	TLSKey  string `envconfig:"NATS_TLS_KEY"`
}

// Options returns the security nats.Options for cfg. Files are checked now so a typo
// fails at start-up with a clear error rather than as an authorization error later.
func Options(cfg NATS) ([]nats.Option, error) {
	var opts []nats.Option
	if cfg.Creds != "" && cfg.NKeySeedFile != "" {
		return nil, errors.New("nats: set CHAT_NATS_CREDS or CHAT_NATS_NKEY_SEED_FILE, not both")
	}
	for _, f := range []struct{ env, path string }{
		{"CHAT_NATS_CREDS", cfg.Creds}, {"CHAT_NATS_NKEY_SEED_FILE", cfg.NKeySeedFile},
		{"CHAT_NATS_TLS_CA", cfg.TLSCA}, {"CHAT_NATS_TLS_CERT", cfg.TLSCert}, {"CHAT_NATS_TLS_KEY", cfg.TLSKey},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("nats: %s: %w", f.env, err)
		}
	}
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if cfg.NKeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats: CHAT_NATS_NKEY_SEED_FILE: %w", err)
		}
		opts = append(opts, o)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("nats: CHAT_NATS_TLS_CERT and CHAT_NATS_TLS_KEY go together")
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	return opts, nil
}

// Conn is a connection made by Connect. It is a *nats.Conn (pass Conn.Conn to the apps)
// that also knows when it has closed, so Shutdown can wait for a drain.
type Conn struct {
	*nats.Conn
	closed chan struct{}
}

// Connect connects to cfg.URL (DefaultURL when empty) as name (the client name the server
// shows). Every service gets the same base options: the security options of cfg,
// reconnecting forever, and disconnects and reconnects logged on log (nil: not logged).
// opts come last and may add to or override them; a service passes what its correctness
// depends on (the api: nats.ReconnectBufSize(-1)) there, visibly in its main.
func Connect(cfg NATS, name string, log *slog.Logger, opts ...nats.Option) (*Conn, error) {
	secure, err := Options(cfg)
	if err != nil {
		return nil, err
	}
	url := cfg.URL
	if url == "" {
		url = DefaultURL
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{closed: make(chan struct{})}
	base := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	nc, err := nats.Connect(url, append(append(base, secure...), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", redact(url), err)
	}
	c.Conn = nc
	return c, nil
}

// Shutdown drains the connection (subscriptions stop taking messages, what they hold is
// processed, pending publishes are flushed) and waits up to timeout for it to close; then
// it closes it regardless. It returns why the drain did not finish cleanly, if it did not.
// It is safe to call on a connection already closed.
func (c *Conn) Shutdown(timeout time.Duration) error {
	if err := c.Drain(); err != nil {
		c.Close()
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("drain nats: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.closed:
		return nil
	case <-t.C:
		c.Close()
		return fmt.Errorf("drain nats: not finished after %s", timeout)
	}
}

// redact drops user:password from a URL list for error messages.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		if s, at := strings.Index(u, "://"), strings.LastIndexByte(u, '@'); s >= 0 && at > s {
			parts[i] = u[:s+3] + "***" + u[at:]
		}
	}
	return strings.Join(parts, ",")
}
