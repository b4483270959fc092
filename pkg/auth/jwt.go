// Package auth is the optional bearer-token authentication shared by the api and the
// pushers: a small JWT (RFC 7519) verifier built on the standard library (HS256, RS256,
// EdDSA with Ed25519), the claims the chat uses (author name, allowed rooms), token
// extraction from HTTP requests and a signer for development tokens (cmd/chattoken).
//
// Authentication is off unless a key is configured (Config.Enabled). The algorithm a
// token may use is fixed by the configured key: an HS256 secret accepts only HS256, an
// RSA public key only RS256, an Ed25519 public key only EdDSA ("none" never).
package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Algorithms accepted in the token header's "alg".
const (
	HS256 = "HS256"
	RS256 = "RS256"
	EdDSA = "EdDSA"
)

// MaxTokenBytes bounds the token size accepted before any decoding.
const MaxTokenBytes = 8192

var b64 = base64.RawURLEncoding

// Sign returns a compact JWT of claims signed with key: a []byte secret (HS256), an
// *rsa.PrivateKey (RS256) or an ed25519.PrivateKey (EdDSA).
func Sign(key any, claims any) (string, error) {
	var alg string
	switch key.(type) {
	case []byte:
		alg = HS256
	case *rsa.PrivateKey:
		alg = RS256
	case ed25519.PrivateKey:
		alg = EdDSA
	default:
		return "", fmt.Errorf("sign: unsupported key type %T", key)
	}
	header, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign: claims: %w", err)
	}
	signing := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	var sig []byte
	switch k := key.(type) {
	case []byte:
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(signing))
		sig = mac.Sum(nil)
	case *rsa.PrivateKey:
		sum := sha256.Sum256([]byte(signing))
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
		if err != nil {
			return "", fmt.Errorf("sign: %w", err)
		}
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(signing))
	}
	return signing + "." + b64.EncodeToString(sig), nil
}

// verifySignature splits a compact JWT, checks its header's alg against the key and the
// signature, and returns the decoded payload.
func (v *Verifier) verifySignature(token string) ([]byte, error) {
	if len(token) > MaxTokenBytes {
		return nil, invalid("token too large")
	}
	h, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, invalid("malformed token")
	}
	p, s, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(s, ".") {
		return nil, invalid("malformed token")
	}
	hb, err := b64.DecodeString(h)
	if err != nil {
		return nil, invalid("malformed token header")
	}
	var header struct {
		Alg  string `json:"alg"`
		Crit []any  `json:"crit"`
	}
	if err := json.Unmarshal(hb, &header); err != nil {
		return nil, invalid("malformed token header")
	}
	if header.Alg != v.alg {
		return nil, invalid("token algorithm " + quoteShort(header.Alg) + " not accepted")
	}
	if header.Crit != nil {
		return nil, invalid("token has unsupported critical headers")
	}
	sig, err := b64.DecodeString(s)
	if err != nil {
		return nil, invalid("malformed token signature")
	}
	signing := token[:len(h)+1+len(p)]
	switch v.alg {
	case HS256:
		mac := hmac.New(sha256.New, v.secret)
		mac.Write([]byte(signing))
		if !hmac.Equal(sig, mac.Sum(nil)) {
			return nil, invalid("bad token signature")
		}
	case RS256:
		sum := sha256.Sum256([]byte(signing))
		if rsa.VerifyPKCS1v15(v.rsaKey, crypto.SHA256, sum[:], sig) != nil {
			return nil, invalid("bad token signature")
		}
	case EdDSA:
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(v.edKey, []byte(signing), sig) {
			return nil, invalid("bad token signature")
		}
	default:
		return nil, errors.New("auth: verifier has no key")
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return nil, invalid("malformed token payload")
	}
	return payload, nil
}

func quoteShort(s string) string {
	if len(s) > 16 {
		s = s[:16] + "..."
	}
	return fmt.Sprintf("%q", s)
}
