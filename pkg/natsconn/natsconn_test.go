package natsconn

import (
	"os"
	"path/filepath"
	"testing"
)

// The tests against a real nats-server are in harness/pkgtest/natsconn.

func TestConfigErrors(t *testing.T) {
	f := filepath.Join(t.TempDir(), "x")
	_ = os.WriteFile(f, []byte("x"), 0o600)
	for name, cfg := range map[string]Config{
		"creds and seed":   {Creds: f, NKeySeedFile: f},
		"missing creds":    {Creds: "/nonexistent/creds"},
		"bad seed":         {NKeySeedFile: f},
		"cert without key": {TLSCert: f},
		"missing ca":       {TLSCA: "/nonexistent/ca.pem"},
	} {
		if _, err := Options(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if opts, err := Options(Config{}); err != nil || len(opts) != 0 {
		t.Fatalf("empty config: %v %v", opts, err)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("CHAT_NATS_CREDS", "/c")
	t.Setenv("CHAT_NATS_TLS_KEY", "/k")
	if c := FromEnv(); c.Creds != "/c" || c.TLSKey != "/k" || c.TLSCA != "" {
		t.Fatalf("%+v", c)
	}
	if _, err := EnvOptions(); err == nil {
		t.Fatal("missing files accepted")
	}
}
