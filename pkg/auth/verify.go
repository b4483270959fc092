package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"os"
	"time"
)

// Config selects the verification key. Embed it in a service Config without a prefix so
// the variables are CHAT_AUTH_*. At most one key may be set; none disables auth.
type Config struct {
	// HS256Secret is a shared secret: tokens must be HS256 (CHAT_AUTH_HS256_SECRET).
	HS256Secret string `envconfig:"AUTH_HS256_SECRET"`
	// PublicKey is a PEM public key (RSA: RS256, Ed25519: EdDSA) (CHAT_AUTH_PUBLIC_KEY).
	PublicKey string `envconfig:"AUTH_PUBLIC_KEY"`
	// PublicKeyFile is a file holding the PEM public key (CHAT_AUTH_PUBLIC_KEY_FILE).
	PublicKeyFile string `envconfig:"AUTH_PUBLIC_KEY_FILE"`
	// Issuer, if set, must equal the token's "iss" (CHAT_AUTH_ISSUER).
	Issuer string `envconfig:"AUTH_ISSUER"`
	// Audience, if set, must be one of the token's "aud" (CHAT_AUTH_AUDIENCE).
	Audience string `envconfig:"AUTH_AUDIENCE"`
	// Leeway is the clock skew tolerated on exp and nbf (CHAT_AUTH_LEEWAY).
	Leeway time.Duration `envconfig:"AUTH_LEEWAY" default:"30s"`
}

// Enabled reports whether a key is configured.
func (c Config) Enabled() bool {
	return c.HS256Secret != "" || c.PublicKey != "" || c.PublicKeyFile != ""
}

// Verifier checks tokens against one key.
type Verifier struct {
	alg      string
	secret   []byte
	rsaKey   *rsa.PublicKey
	edKey    ed25519.PublicKey
	issuer   string
	audience string
	leeway   time.Duration
	now      func() time.Time
}

// NewVerifier builds the verifier for cfg; (nil, nil) when auth is disabled.
func NewVerifier(cfg Config) (*Verifier, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	n := 0
	for _, s := range []string{cfg.HS256Secret, cfg.PublicKey, cfg.PublicKeyFile} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("auth: set only one of CHAT_AUTH_HS256_SECRET, CHAT_AUTH_PUBLIC_KEY, CHAT_AUTH_PUBLIC_KEY_FILE")
	}
	v := &Verifier{issuer: cfg.Issuer, audience: cfg.Audience, leeway: max(cfg.Leeway, 0), now: time.Now}
	if cfg.HS256Secret != "" {
		if len(cfg.HS256Secret) < 32 {
			return nil, errors.New("auth: CHAT_AUTH_HS256_SECRET must be at least 32 bytes")
		}
		v.alg, v.secret = HS256, []byte(cfg.HS256Secret)
		return v, nil
	}
	data := []byte(cfg.PublicKey)
	if cfg.PublicKeyFile != "" {
		var err error
		if data, err = os.ReadFile(cfg.PublicKeyFile); err != nil {
			return nil, fmt.Errorf("auth: read public key: %w", err)
		}
	}
	key, err := ParsePublicKey(data)
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("auth: RSA key must have at least 2048 bits")
		}
		v.alg, v.rsaKey = RS256, k
	case ed25519.PublicKey:
		v.alg, v.edKey = EdDSA, k
	}
	return v, nil
}

// ParsePublicKey reads a PEM "PUBLIC KEY" (PKIX) or "RSA PUBLIC KEY" (PKCS #1) block
// holding an RSA or Ed25519 key.
func ParsePublicKey(data []byte) (any, error) {
	block, _ := pem.Decode(bytes.TrimSpace(data))
	if block == nil {
		return nil, errors.New("auth: public key is not PEM")
	}
	if block.Type == "RSA PUBLIC KEY" {
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: public key: %w", err)
		}
		return k, nil
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: public key: %w", err)
	}
	switch key.(type) {
	case *rsa.PublicKey, ed25519.PublicKey:
		return key, nil
	}
	return nil, fmt.Errorf("auth: public key type %T not supported (RSA or Ed25519)", key)
}

// Algorithm is the one "alg" the verifier accepts.
func (v *Verifier) Algorithm() string { return v.alg }

// Verify checks the token's signature, algorithm, exp, nbf and the configured iss and aud,
// and that it names an author. Every failure is an *Error with Status 401.
func (v *Verifier) Verify(token string) (*Claims, error) {
	payload, err := v.verifySignature(token)
	if err != nil {
		return nil, err
	}
	var c Claims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return nil, invalid("malformed token claims")
	}
	now := v.now()
	if c.Expires == nil {
		return nil, invalid("token has no exp")
	}
	if now.After(c.Expires.Time().Add(v.leeway)) {
		return nil, invalid("token expired")
	}
	if c.NotBefore != nil && now.Add(v.leeway).Before(c.NotBefore.Time()) {
		return nil, invalid("token not valid yet")
	}
	if v.issuer != "" && c.Issuer != v.issuer {
		return nil, invalid("token issuer not accepted")
	}
	if v.audience != "" && !c.Audience.has(v.audience) {
		return nil, invalid("token audience not accepted")
	}
	if _, err := c.Author(); err != nil {
		return nil, err
	}
	for _, p := range c.Rooms {
		if !validPattern(p) {
			return nil, invalid("token rooms claim has an invalid pattern")
		}
	}
	return &c, nil
}

// NumericDate is a JWT date: seconds since the epoch, possibly fractional.
type NumericDate struct{ t time.Time }

// NewNumericDate wraps t.
func NewNumericDate(t time.Time) *NumericDate { return &NumericDate{t: t} }

// Time is the date.
func (d *NumericDate) Time() time.Time { return d.t }

// MarshalJSON writes whole seconds.
func (d *NumericDate) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprint(d.t.Unix())), nil
}

// UnmarshalJSON reads a number of seconds.
func (d *NumericDate) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("date must be a number")
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > 1e11 {
		return errors.New("date out of range")
	}
	sec, frac := math.Modf(f)
	d.t = time.Unix(int64(sec), int64(frac*1e9))
	return nil
}

// Audience is "aud": a string or a list of strings.
type Audience []string

func (a *Audience) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*a = Audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New("aud must be a string or a list of strings")
	}
	*a = l
	return nil
}

func (a Audience) has(s string) bool {
	for _, x := range a {
		if x == s {
			return true
		}
	}
	return false
}
