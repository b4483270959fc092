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
	for name, cfg := range map[string]NATS{
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
	if opts, err := Options(NATS{}); err != nil || len(opts) != 0 {
		t.Fatalf("empty config: %v %v", opts, err)
	}
}

func TestRedact(t *testing.T) {
	got := redact("nats://u:secret@a:4222,nats://b:4222,tls://tok@c:4222")
	if want := "nats://***@a:4222,nats://b:4222,tls://***@c:4222"; got != want {
		t.Fatalf("redact = %q, want %q", got, want)
	}
}
