package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Config selects the verification key. Embed it in a service Config without a prefix so
// the variables are CHAT_AUTH_*. At most one key source may be set; none disables auth.
type Config struct {
	// HS256Secret is a shared secret: tokens must be HS256 (CHAT_AUTH_HS256_SECRET).
	HS256Secret string `envconfig:"AUTH_HS256_SECRET"`
	// PublicKey is a PEM public key (RSA: RS256, P-256: ES256, Ed25519: EdDSA)
	// (CHAT_AUTH_PUBLIC_KEY).
	PublicKey string `envconfig:"AUTH_PUBLIC_KEY"`
	// PublicKeyFile is a file holding the PEM public key (CHAT_AUTH_PUBLIC_KEY_FILE).
	PublicKeyFile string `envconfig:"AUTH_PUBLIC_KEY_FILE"`
	// JWKSURL is an identity provider's JSON Web Key Set: the token's "kid" selects the
	// key (CHAT_AUTH_JWKS_URL).
	JWKSURL string `envconfig:"AUTH_JWKS_URL"`
	// JWKSRefresh is how old the fetched key set may get before it is fetched again
	// (CHAT_AUTH_JWKS_REFRESH).
	JWKSRefresh time.Duration `envconfig:"AUTH_JWKS_REFRESH" default:"5m"`
	// Issuer, if set, must equal the token's "iss" (CHAT_AUTH_ISSUER).
	Issuer string `envconfig:"AUTH_ISSUER"`
	// Audience must be one of the token's "aud" (CHAT_AUTH_AUDIENCE); "*" accepts any.
	// Required with a public key or a JWKS; optional with an HS256 secret.
	Audience string `envconfig:"AUTH_AUDIENCE"`
	// Leeway is the clock skew tolerated on exp, nbf and iat (CHAT_AUTH_LEEWAY).
	Leeway time.Duration `envconfig:"AUTH_LEEWAY" default:"30s"`
}

// AnyAudience as CHAT_AUTH_AUDIENCE accepts tokens for any audience.
const AnyAudience = "*"

// Enabled reports whether a key is configured.
func (c Config) Enabled() bool {
	return c.HS256Secret != "" || c.PublicKey != "" || c.PublicKeyFile != "" || c.JWKSURL != ""
}

// Option adjusts NewVerifier.
type Option func(*Verifier)

// WithLogger is where the verifier reports JWKS fetches and their failures (default
// slog.Default()).
func WithLogger(log *slog.Logger) Option {
	return func(v *Verifier) {
		if log != nil {
			v.log = log
		}
	}
}

// Verifier checks tokens against one key or a JWKS.
type Verifier struct {
	static   key     // the one configured key (no JWKS)
	keys     *keySet // the JWKS (nil: static)
	algs     []string
	issuer   string
	audience string
	leeway   time.Duration
	now      func() time.Time
	log      *slog.Logger
	parser   *jwt.Parser
}

// key is a verification key and the one algorithm it verifies.
type key struct {
	alg string
	key any // []byte, *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey
}

// NewVerifier builds the verifier for cfg; (nil, nil) when auth is disabled. With a JWKS
// it fetches the key set once (bounded by a timeout); if that fails it logs and returns
// the verifier anyway: tokens are refused (401) until a later fetch succeeds.
func NewVerifier(cfg Config, opts ...Option) (*Verifier, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	n := 0
	for _, s := range []string{cfg.HS256Secret, cfg.PublicKey, cfg.PublicKeyFile, cfg.JWKSURL} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("auth: set only one of CHAT_AUTH_HS256_SECRET, CHAT_AUTH_PUBLIC_KEY, CHAT_AUTH_PUBLIC_KEY_FILE, CHAT_AUTH_JWKS_URL")
	}
	v := &Verifier{issuer: cfg.Issuer, audience: cfg.Audience, leeway: max(cfg.Leeway, 0), now: time.Now, log: slog.Default()}
	for _, o := range opts {
		o(v)
	}
	if cfg.HS256Secret == "" && cfg.Audience == "" {
		// A public key or a JWKS usually belongs to an identity provider that signs
		// tokens for other applications too: without an audience check any of them
		// would be accepted here.
		return nil, errors.New("auth: CHAT_AUTH_AUDIENCE is required with a public key or a JWKS (the audience this chat's tokens carry; * accepts any)")
	}
	switch {
	case cfg.HS256Secret != "":
		if len(cfg.HS256Secret) < 32 {
			return nil, errors.New("auth: CHAT_AUTH_HS256_SECRET must be at least 32 bytes")
		}
		v.static = key{alg: HS256, key: []byte(cfg.HS256Secret)}
		v.algs = []string{HS256}
	case cfg.JWKSURL != "":
		ks, err := newKeySet(cfg.JWKSURL, cfg.JWKSRefresh, func() time.Time { return v.now() }, v.log)
		if err != nil {
			return nil, err
		}
		v.keys = ks
		v.algs = []string{RS256, ES256, EdDSA}
	default:
		data := []byte(cfg.PublicKey)
		if cfg.PublicKeyFile != "" {
			var err error
			if data, err = os.ReadFile(cfg.PublicKeyFile); err != nil {
				return nil, fmt.Errorf("auth: read public key: %w", err)
			}
		}
		pub, err := ParsePublicKey(data)
		if err != nil {
			return nil, err
		}
		if v.static, err = publicKey(pub); err != nil {
			return nil, err
		}
		v.algs = []string{v.static.alg}
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(v.algs),
		jwt.WithJSONNumber(),
		jwt.WithStrictDecoding(),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	}
	if v.issuer != "" {
		popts = append(popts, jwt.WithIssuer(v.issuer))
	}
	if v.audience != "" && v.audience != AnyAudience {
		popts = append(popts, jwt.WithAudience(v.audience))
	}
	v.parser = jwt.NewParser(popts...)
	if v.keys != nil {
		v.keys.load()
	}
	return v, nil
}

// publicKey is the verification key for a parsed public key, with its algorithm.
func publicKey(pub any) (key, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return key{}, errors.New("auth: RSA key must have at least 2048 bits")
		}
		return key{alg: RS256, key: k}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return key{}, errors.New("auth: ECDSA key must be P-256 (ES256)")
		}
		return key{alg: ES256, key: k}, nil
	case ed25519.PublicKey:
		return key{alg: EdDSA, key: k}, nil
	}
	return key{}, fmt.Errorf("auth: public key type %T not supported (RSA, P-256 or Ed25519)", pub)
}

// ParsePublicKey reads a PEM "PUBLIC KEY" (PKIX) or "RSA PUBLIC KEY" (PKCS #1) block
// holding an RSA, ECDSA or Ed25519 key.
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
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: public key: %w", err)
	}
	switch k.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return k, nil
	}
	return nil, fmt.Errorf("auth: public key type %T not supported (RSA, ECDSA or Ed25519)", k)
}

// Algorithm is the one "alg" a static key accepts; "" with a JWKS (each key fixes its
// own).
func (v *Verifier) Algorithm() string { return v.static.alg }

// Verify checks the token's signature, algorithm, exp, nbf, iat and the configured iss
// and aud, and that it names an author. Every failure is an *Error with Status 401. With
// a JWKS a token whose kid is not in the cached set may wait for one refetch (bounded by
// the fetch timeout, at most one fetch per jwksMinInterval).
func (v *Verifier) Verify(token string) (*Claims, error) {
	c, err := v.parse(token)
	if err != nil {
		return nil, err
	}
	if _, err := c.Author(); err != nil {
		return nil, err
	}
	for _, p := range c.Rooms {
		if !validPattern(p) {
			return nil, invalid("token rooms claim has an invalid pattern")
		}
	}
	return c, nil
}

// NumericDate is a JWT date: seconds since the epoch, possibly fractional.
type NumericDate struct{ t time.Time }

// NewNumericDate wraps t.
func NewNumericDate(t time.Time) *NumericDate { return &NumericDate{t: t} }

// Time is the date.
func (d *NumericDate) Time() time.Time { return d.t }

// jwt is the library's view of d (nil stays nil).
func (d *NumericDate) jwt() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &jwt.NumericDate{Time: d.t}
}

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

// The jwt.Claims methods: the library validates exp, nbf, iat, iss and aud through them.

func (c *Claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Expires.jwt(), nil }
func (c *Claims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.jwt(), nil }
func (c *Claims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt.jwt(), nil }
func (c *Claims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *Claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *Claims) GetAudience() (jwt.ClaimStrings, error)       { return jwt.ClaimStrings(c.Audience), nil }
