// Package natsconn turns the NATS security settings every service shares (credentials
// file, nkey seed, TLS) into nats.Options, so the four mains connect the same way.
package natsconn

import (
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
)

// Config is read with envconfig.Process("chat", &cfg): CHAT_NATS_CREDS etc. All empty
// means a plain connection (the URL may still carry user:password or use tls://).
type Config struct {
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

// FromEnv reads the Config from the environment (the same variables envconfig would).
func FromEnv() Config {
	return Config{
		Creds:        os.Getenv("CHAT_NATS_CREDS"),
		NKeySeedFile: os.Getenv("CHAT_NATS_NKEY_SEED_FILE"),
		TLSCA:        os.Getenv("CHAT_NATS_TLS_CA"),
		TLSCert:      os.Getenv("CHAT_NATS_TLS_CERT"),
		TLSKey:       os.Getenv("CHAT_NATS_TLS_KEY"),
	}
}

// EnvOptions is Options(FromEnv()): what every main adds to its nats.Connect.
func EnvOptions() ([]nats.Option, error) { return Options(FromEnv()) }

// Options returns the nats.Options for cfg. Files are checked now so a typo fails at
// start-up with a clear error rather than as an authorization error later.
func Options(cfg Config) ([]nats.Option, error) {
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
