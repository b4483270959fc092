// Command chattoken mints bearer tokens (JWTs) for development and tests:
//
//	go run ./cmd/chattoken -secret "$CHAT_AUTH_HS256_SECRET" -sub ann -rooms 'general,team-*'
//	go run ./cmd/chattoken -key ed25519.pem -sub deploy-bot -name 'Deploy bot' -ttl 24h -aud chat
//
// -secret signs HS256; -key takes a PEM private key (PKCS #8, PKCS #1 or SEC 1): RSA signs
// RS256, P-256 signs ES256, Ed25519 signs EdDSA; -kid names the key as a JWKS lists it.
// The token is printed on stdout. Production tokens come from your
// identity provider; this tool is for local use.
package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/chatrt/chat/pkg/auth"
	"github.com/chatrt/chat/pkg/buildinfo"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, "chattoken:", err)
		os.Exit(2)
	}
}

func run(args []string, out io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("chattoken", flag.ContinueOnError)
	secret := fs.String("secret", os.Getenv("CHAT_AUTH_HS256_SECRET"), "HS256 secret (default $CHAT_AUTH_HS256_SECRET)")
	keyFile := fs.String("key", "", "PEM private key file (RSA: RS256, P-256: ES256, Ed25519: EdDSA) instead of -secret")
	kid := fs.String("kid", "", "key id (header kid), for a verifier using a JWKS")
	sub := fs.String("sub", "", "subject (the author name unless -name is given)")
	name := fs.String("name", "", "display name (claim name)")
	rooms := fs.String("rooms", "", "comma-separated rooms or patterns (team-*, *); empty: every room")
	roles := fs.String("roles", "", "comma-separated roles (claim roles): moderator edits and deletes any message, admin opens /admin")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	iss := fs.String("iss", "", "issuer (claim iss)")
	aud := fs.String("aud", "", "audience (claim aud)")
	version := fs.Bool("version", false, "print the build (version, commit, commit time) and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version {
		_, err := fmt.Fprintln(out, buildinfo.Read().String("chattoken"))
		return err
	}
	if *sub == "" && *name == "" {
		return errors.New("give -sub or -name")
	}
	var key any
	switch {
	case *keyFile != "":
		k, err := readPrivateKey(*keyFile)
		if err != nil {
			return err
		}
		key = k
	case *secret != "":
		if len(*secret) < 32 {
			return errors.New("the secret must be at least 32 bytes (as the services require)")
		}
		key = []byte(*secret)
	default:
		return errors.New("give -secret (or $CHAT_AUTH_HS256_SECRET) or -key")
	}
	claims := auth.Claims{Subject: *sub, Name: *name, Issuer: *iss,
		IssuedAt: auth.NewNumericDate(now), Expires: auth.NewNumericDate(now.Add(*ttl))}
	if *aud != "" {
		claims.Audience = []string{*aud}
	}
	if *roles != "" {
		claims.Roles = auth.Roles(auth.ParseRooms(*roles))
	}
	if *rooms != "" {
		claims.Rooms = auth.ParseRooms(*rooms)
	}
	tok, err := auth.SignWithKeyID(key, *kid, claims)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}

func readPrivateKey(path string) (any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: not PEM", path)
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("%s: key type %T not supported (RSA, P-256 or Ed25519)", path, k)
}
