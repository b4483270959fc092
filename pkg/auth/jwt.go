// Package auth is the optional bearer-token authentication shared by the api and the
// pushers: JWT (RFC 7519) verification on github.com/golang-jwt/jwt/v5 (HS256, RS256,
// ES256, EdDSA with Ed25519) against one configured key or a JWKS fetched from an identity
// provider, the claims the chat uses (author name, allowed rooms), token extraction from
// HTTP requests and a signer for development tokens (cmd/chattoken).
//
// Authentication is off unless a key is configured (Config.Enabled). The algorithm a
// token may use is fixed by the key that verifies it: an HS256 secret accepts only HS256,
// an RSA public key only RS256, a P-256 key only ES256, an Ed25519 key only EdDSA ("none"
// never).
package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/golang-jwt/jwt/v5"
)

// Algorithms accepted in the token header's "alg".
const (
	HS256 = "HS256"
	RS256 = "RS256"
	ES256 = "ES256"
	EdDSA = "EdDSA"
)

// MaxTokenBytes bounds the token size accepted before any decoding.
const MaxTokenBytes = 8192

var b64 = base64.RawURLEncoding

// Sign returns a compact JWT of claims signed with key: a []byte secret (HS256), an
// *rsa.PrivateKey (RS256), a P-256 *ecdsa.PrivateKey (ES256) or an ed25519.PrivateKey
// (EdDSA).
func Sign(key any, claims any) (string, error) { return SignWithKeyID(key, "", claims) }

// SignWithKeyID is Sign with a "kid" header (the key's id in the issuer's JWKS) when kid
// is not empty.
func SignWithKeyID(key any, kid string, claims any) (string, error) {
	var method jwt.SigningMethod
	switch k := key.(type) {
	case []byte:
		method = jwt.SigningMethodHS256
	case *rsa.PrivateKey:
		method = jwt.SigningMethodRS256
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return "", errors.New("sign: ECDSA key must be P-256 (ES256)")
		}
		method = jwt.SigningMethodES256
	case ed25519.PrivateKey:
		method = jwt.SigningMethodEdDSA
	default:
		return "", fmt.Errorf("sign: unsupported key type %T", key)
	}
	header := map[string]string{"alg": method.Alg(), "typ": "JWT"}
	if kid != "" {
		header["kid"] = kid
	}
	hb, _ := json.Marshal(header)
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign: claims: %w", err)
	}
	signing := b64.EncodeToString(hb) + "." + b64.EncodeToString(payload)
	sig, err := method.Sign(signing, key)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return signing + "." + b64.EncodeToString(sig), nil
}

// parse verifies token with the library: the header's alg must be one the verifier has a
// key for and the key's own (keyFor), the signature must hold, exp is required and
// exp/nbf/iat get the leeway, iss and aud are checked when configured. The claims are
// decoded into Claims (our own date, audience and rooms types).
func (v *Verifier) parse(token string) (*Claims, error) {
	if len(token) > MaxTokenBytes {
		return nil, invalid("token too large")
	}
	var c Claims
	t, err := v.parser.ParseWithClaims(token, &c, v.keyFor)
	if err != nil {
		return nil, v.reason(t, &c, err)
	}
	return &c, nil
}

// keyFor is the library's Keyfunc: the key that must verify t, chosen by its header. Its
// errors are *Error so the reason reaches the client unchanged.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, invalid("token has unsupported critical headers")
	}
	alg, _ := t.Header["alg"].(string)
	if v.keys == nil {
		if alg != v.static.alg {
			return nil, invalid("token algorithm " + quoteShort(alg) + " not accepted")
		}
		return v.static.key, nil
	}
	kid, ok := t.Header["kid"].(string)
	if !ok || kid == "" {
		return nil, invalid("token has no kid")
	}
	k, err := v.keys.lookup(kid)
	if err != nil {
		return nil, err
	}
	if alg != k.alg {
		return nil, invalid("token algorithm " + quoteShort(alg) + " not accepted for its key")
	}
	return k.key, nil
}

// reason turns a library error into the *Error the client sees (always 401).
func (v *Verifier) reason(t *jwt.Token, c *Claims, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalid("malformed token")
	case t != nil && t.Method != nil && !slices.Contains(v.algs, t.Method.Alg()),
		errors.Is(err, jwt.ErrTokenUnverifiable):
		alg, _ := headerAlg(t)
		return invalid("token algorithm " + quoteShort(alg) + " not accepted")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalid("bad token signature")
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalid("token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalid("token not valid yet")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalid("token issued in the future")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalid("token issuer not accepted")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return invalid("token audience not accepted")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		switch {
		case c.Expires == nil:
			return invalid("token has no exp")
		case v.issuer != "" && c.Issuer == "":
			return invalid("token issuer not accepted")
		default:
			return invalid("token audience not accepted")
		}
	}
	return invalid("invalid token")
}

func headerAlg(t *jwt.Token) (string, bool) {
	if t == nil {
		return "", false
	}
	alg, ok := t.Header["alg"].(string)
	return alg, ok
}

func quoteShort(s string) string {
	if len(s) > 16 {
		s = s[:16] + "..."
	}
	return fmt.Sprintf("%q", s)
}
