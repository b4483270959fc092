package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// jwksTimeout bounds one fetch, and so how long a Verify can wait for one (a variable for
// tests).
var jwksTimeout = 5 * time.Second

// JWKS fetch bounds.
const (
	// jwksMaxBytes bounds the key set document.
	jwksMaxBytes = 1 << 20
	// jwksMinInterval is the least time between two fetches: a token with an unknown kid
	// (a key the identity provider just added, or garbage) triggers at most one fetch
	// per interval, and a failed fetch is retried no sooner.
	jwksMinInterval = 15 * time.Second
	// jwksDefaultRefresh is used when the configured refresh is not positive.
	jwksDefaultRefresh = 5 * time.Minute
)

// keySet is a JWKS fetched from an identity provider and cached by kid. It has no
// goroutine of its own: a Verify that finds the set older than refresh starts a
// background fetch (and keeps verifying with the cached keys meanwhile); a Verify whose
// kid is unknown starts one (rate-limited) and waits for it. A failed fetch keeps the
// previous keys.
type keySet struct {
	url         string
	client      *http.Client
	timeout     time.Duration
	refresh     time.Duration
	minInterval time.Duration
	now         func() time.Time
	log         *slog.Logger

	mu        sync.Mutex
	keys      map[string]key // nil until a fetch succeeds
	fetched   time.Time      // last successful fetch
	attempted time.Time      // start of the last fetch
	inflight  chan struct{}  // non-nil while a fetch runs; closed when it ends
}

func newKeySet(rawURL string, refresh time.Duration, now func() time.Time, log *slog.Logger) (*keySet, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("auth: CHAT_AUTH_JWKS_URL must be an http(s) URL")
	}
	if u.Scheme == "http" {
		log.Warn("auth: CHAT_AUTH_JWKS_URL is plain http: whoever can alter that traffic can mint tokens", "jwks_host", u.Host)
	}
	if refresh <= 0 {
		refresh = jwksDefaultRefresh
	}
	return &keySet{
		url:         rawURL,
		client:      &http.Client{Timeout: jwksTimeout},
		timeout:     jwksTimeout,
		refresh:     refresh,
		minInterval: jwksMinInterval,
		now:         now,
		log:         log,
	}, nil
}

// load is the first fetch, waited for (at most jwksTimeout). Its failure is only logged:
// the service starts and refuses tokens until a later fetch succeeds.
func (s *keySet) load() {
	s.mu.Lock()
	done := s.startLocked()
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// lookup is the key for kid: from the cache, else after one refetch if the rate limit
// allows one (or one is running). Errors are 401 *Errors.
func (s *keySet) lookup(kid string) (key, error) {
	s.mu.Lock()
	if k, ok := s.keys[kid]; ok {
		if s.now().Sub(s.fetched) >= s.refresh {
			s.startLocked() // in the background: the cached key serves meanwhile
		}
		s.mu.Unlock()
		return k, nil
	}
	done := s.startLocked()
	s.mu.Unlock()
	if done != nil {
		<-done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[kid]; ok {
		return k, nil
	}
	if s.keys == nil {
		return key{}, invalid("token signing keys not available yet")
	}
	return key{}, invalid("token key id not known")
}

// startLocked starts a fetch unless one is running (then it returns that one's channel)
// or the last started less than minInterval ago (then nil). s.mu is held.
func (s *keySet) startLocked() chan struct{} {
	if s.inflight != nil {
		return s.inflight
	}
	now := s.now()
	if !s.attempted.IsZero() && now.Sub(s.attempted) < s.minInterval {
		return nil
	}
	s.attempted = now
	done := make(chan struct{})
	s.inflight = done
	go s.fetch(done)
	return done
}

// fetch gets the key set and, if it holds at least one usable key, replaces the cache.
func (s *keySet) fetch(done chan struct{}) {
	keys, skipped, err := s.get()
	s.mu.Lock()
	changed := false
	if err == nil {
		changed = !sameKids(s.keys, keys)
		s.keys, s.fetched = keys, s.now()
	}
	s.inflight = nil
	s.mu.Unlock()
	// Logged before waking the waiters, so a NewVerifier that returns has logged its
	// first fetch's outcome.
	switch {
	case err != nil:
		s.log.Warn("auth: JWKS fetch failed; keeping the previous keys", "error", err)
	case changed:
		s.log.Info("auth: JWKS keys loaded", "keys", len(keys), "skipped", skipped)
	}
	close(done)
}

func (s *keySet) get() (map[string]key, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("jwks get: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("jwks get: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("jwks read: %w", err)
	}
	if len(body) > jwksMaxBytes {
		return nil, 0, fmt.Errorf("jwks larger than %d bytes", jwksMaxBytes)
	}
	return parseJWKS(body)
}

// jwk is one JSON Web Key (RFC 7517, 7518, 8037), the members the chat reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS reads {"keys":[...]} into the usable signature keys by kid, skipping (and
// counting) keys without a kid, for encryption, of other types or algorithms, or invalid.
// A set without any usable key is an error.
func parseJWKS(body []byte) (map[string]key, int, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, 0, fmt.Errorf("jwks: %w", err)
	}
	keys := make(map[string]key, len(doc.Keys))
	skipped := 0
	for _, raw := range doc.Keys {
		var j jwk
		if json.Unmarshal(raw, &j) != nil || j.Kid == "" || (j.Use != "" && j.Use != "sig") {
			skipped++
			continue
		}
		k, err := j.key()
		if _, dup := keys[j.Kid]; err != nil || dup {
			skipped++
			continue
		}
		keys[j.Kid] = k
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("jwks: no usable signature key (%d skipped)", skipped)
	}
	return keys, skipped, nil
}

// key is the verification key; its algorithm follows from the key type (an "alg", if
// present, must agree).
func (j jwk) key() (key, error) {
	var k key
	switch j.Kty {
	case "RSA":
		n, err1 := b64.DecodeString(j.N)
		e, err2 := b64.DecodeString(j.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return k, errors.New("bad RSA key")
		}
		exp := int(new(big.Int).SetBytes(e).Int64())
		if exp < 3 || exp%2 == 0 {
			return k, errors.New("bad RSA exponent")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
		if pub.N.BitLen() < 2048 {
			return k, errors.New("RSA key shorter than 2048 bits")
		}
		k = key{alg: RS256, key: pub}
	case "EC":
		x, err1 := b64.DecodeString(j.X)
		y, err2 := b64.DecodeString(j.Y)
		if j.Crv != "P-256" || err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return k, errors.New("bad EC key (P-256 only)")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), slices.Concat([]byte{4}, x, y))
		if err != nil {
			return k, err
		}
		k = key{alg: ES256, key: pub}
	case "OKP":
		x, err := b64.DecodeString(j.X)
		if j.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return k, errors.New("bad OKP key (Ed25519 only)")
		}
		k = key{alg: EdDSA, key: ed25519.PublicKey(x)}
	default:
		return k, fmt.Errorf("key type %q not supported", j.Kty)
	}
	if j.Alg != "" && j.Alg != k.alg && !(k.alg == EdDSA && j.Alg == "Ed25519") {
		return k, fmt.Errorf("alg %q not supported for %s", j.Alg, j.Kty)
	}
	return k, nil
}

func sameKids(a, b map[string]key) bool {
	if len(a) != len(b) {
		return false
	}
	for kid := range a {
		if _, ok := b[kid]; !ok {
			return false
		}
	}
	return true
}
