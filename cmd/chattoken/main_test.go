package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/auth"
)

const secret = "0123456789abcdef0123456789abcdef"

func TestHS256(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-secret", secret, "-sub", "ann", "-rooms", "general, team-*", "-ttl", "2h", "-aud", "chat"}, &out, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, _ := auth.NewVerifier(auth.Config{HS256Secret: secret, Audience: "chat"})
	c, err := v.Verify(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := c.Author(); a != "ann" || !c.Allows("team-x") || c.Allows("random") {
		t.Fatalf("claims %+v", c)
	}
	if d := time.Until(c.Expires.Time()); d < time.Hour || d > 2*time.Hour {
		t.Fatalf("exp in %v", d)
	}
}

func TestEdDSAKeyFile(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	pubDER, _ := x509.MarshalPKIXPublicKey(pub)
	var out bytes.Buffer
	if err := run([]string{"-key", keyFile, "-name", "Deploy bot", "-aud", "chat"}, &out, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})), Audience: "chat"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := c.Author(); a != "Deploy bot" || !c.Allows("anything") {
		t.Fatalf("claims %+v", c)
	}
}

func TestErrors(t *testing.T) {
	t.Setenv("CHAT_AUTH_HS256_SECRET", "")
	for _, args := range [][]string{
		{"-sub", "ann"},                     // no key
		{"-secret", "short", "-sub", "ann"}, // short secret
		{"-secret", secret},                 // no subject
		{"-key", "/nonexistent", "-sub", "a"},
	} {
		if err := run(args, &bytes.Buffer{}, time.Now()); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
