package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
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
	if err := run([]string{"-secret", secret, "-sub", "ann", "-rooms", "general, team-*", "-ttl", "2h", "-aud", "chat",
		"-roles", "admin, moderator"}, &out, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, _ := auth.NewVerifier(auth.Config{HS256Secret: secret, Audience: "chat"})
	c, err := v.Verify(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := c.Author(); a != "ann" || !c.Allows("team-x") || c.Allows("random") || !c.HasRole(auth.RoleAdmin) || !c.HasRole(auth.RoleModerator) {
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

// TestES256KeyID: a P-256 key (SEC 1 PEM, as openssl ecparam writes it) signs ES256 and
// -kid names it in the header, as a verifier using a JWKS needs.
func TestES256KeyID(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(priv)
	keyFile := filepath.Join(t.TempDir(), "ec.pem")
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
	var out bytes.Buffer
	if err := run([]string{"-key", keyFile, "-kid", "2026-12", "-sub", "ann", "-aud", "chat"}, &out, time.Now()); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	pubDER, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	v, err := auth.NewVerifier(auth.Config{PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})), Audience: "chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	header, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	var h map[string]string
	if err := json.Unmarshal(header, &h); err != nil || h["alg"] != "ES256" || h["kid"] != "2026-12" {
		t.Fatalf("header %s", header)
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
