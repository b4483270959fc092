package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// idp is a local identity provider's JWKS endpoint whose key set the test rotates.
type idp struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []map[string]any
	status  int    // answer status (0: 200)
	body    []byte // answer body instead of the key set (nil: the key set)
	fetches atomic.Int64
}

func newIDP(t *testing.T, keys ...map[string]any) *idp {
	t.Helper()
	p := &idp{keys: keys}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		status, body := p.status, p.body
		if body == nil {
			body, _ = json.Marshal(map[string]any{"keys": p.keys})
		}
		p.mu.Unlock()
		if status != 0 {
			w.WriteHeader(status)
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) set(keys ...map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys, p.status, p.body = keys, 0, nil
}

func (p *idp) fail(status int, body []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status, p.body = status, body
}

// jwkOf is the public JWK of a private key.
func jwkOf(t *testing.T, kid string, priv any) map[string]any {
	t.Helper()
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": RS256,
			"n": b64.EncodeToString(k.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PrivateKey:
		b, err := k.PublicKey.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256",
			"x": b64.EncodeToString(b[1:33]), "y": b64.EncodeToString(b[33:])}
	case ed25519.PrivateKey:
		return map[string]any{"kty": "OKP", "kid": kid, "crv": "Ed25519", "alg": EdDSA,
			"x": b64.EncodeToString(k.Public().(ed25519.PublicKey))}
	}
	t.Fatalf("no JWK for %T", priv)
	return nil
}

// clock is a settable time for the verifier (JWKS age and rate limit).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func withNow(f func() time.Time) Option { return func(v *Verifier) { v.now = f } }

// logBuffer collects the verifier's log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func jwksClaims() map[string]any { return claims(func(m map[string]any) { m["aud"] = "chat" }) }

func mustSignKID(t *testing.T, key any, kid string, c any) string {
	t.Helper()
	tok, err := SignWithKeyID(key, kid, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestJWKSRotation: the identity provider rotates its keys while the verifier runs. A
// token with a new kid verifies after one refetch, without a restart; a removed kid is
// refused once a fetch has dropped it; the periodic refresh picks changes up in the
// background; a flood of unknown kids fetches at most once per interval.
func TestJWKSRotation(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	_, edKey2, _ := ed25519.GenerateKey(rand.Reader)
	p := newIDP(t, jwkOf(t, "k1", rsaKey), jwkOf(t, "k2", ecKey))
	clk := &clock{t: time.Now()}
	v, err := NewVerifier(Config{JWKSURL: p.srv.URL, Audience: "chat"}, withNow(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at start, want 1", n)
	}
	verify := func(name string, tok string, want bool) {
		t.Helper()
		_, err := v.Verify(tok)
		if (err == nil) != want {
			t.Errorf("%s: err %v, want ok=%v", name, err, want)
		}
		if err != nil && Status(err) != http.StatusUnauthorized {
			t.Errorf("%s: status %d", name, Status(err))
		}
	}
	k1 := mustSignKID(t, rsaKey, "k1", jwksClaims())
	k2 := mustSignKID(t, ecKey, "k2", jwksClaims())
	k3 := mustSignKID(t, edKey, "k3", jwksClaims())
	verify("RS256 k1", k1, true)
	verify("ES256 k2", k2, true)
	verify("no kid", mustSign(t, rsaKey, jwksClaims()), false)
	verify("ES256 token naming the RSA kid", mustSignKID(t, ecKey, "k1", jwksClaims()), false)
	verify("HS256 token naming a kid", mustSignKID(t, []byte(secret), "k1", jwksClaims()), false)
	verify("other audience", mustSignKID(t, rsaKey, "k1", claims(func(m map[string]any) { m["aud"] = "billing" })), false)
	// k3 is unknown; the start-up fetch was just now, so no refetch yet.
	verify("k3 before the provider has it", k3, false)
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1 (rate-limited)", n)
	}

	// Rotation: k1 leaves, k3 arrives.
	p.set(jwkOf(t, "k2", ecKey), jwkOf(t, "k3", edKey))
	clk.Add(jwksMinInterval)
	verify("k3 after the rotation", k3, true) // waits for one refetch
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	verify("k1 after the rotation", k1, false)
	verify("k2 still there", k2, true)
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (k1 refused from the fresh set, no refetch)", n)
	}

	// A flood of unknown kids, concurrently: at most one fetch per interval.
	clk.Add(jwksMinInterval)
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for i := range 200 {
		wg.Go(func() {
			if _, err := v.Verify(mustSignKID(t, edKey2, fmt.Sprintf("x%d", i), jwksClaims())); err == nil {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if n := p.fetches.Load(); n != 3 || accepted.Load() != 0 {
		t.Fatalf("flood: %d fetches (want 3), %d accepted", n, accepted.Load())
	}
	for i := range 50 {
		verify("flood after the fetch", mustSignKID(t, edKey2, fmt.Sprintf("y%d", i), jwksClaims()), false)
	}
	if n := p.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches after the flood, want 3", n)
	}

	// The periodic refresh: once the set is older than CHAT_AUTH_JWKS_REFRESH, a
	// verification with a known kid starts a background fetch; the cached key serves
	// meanwhile. The provider has dropped k2 and added k4.
	p.set(jwkOf(t, "k3", edKey), jwkOf(t, "k4", edKey2))
	clk.Add(jwksDefaultRefresh)
	verify("k2 from the stale set", k2, true)
	waitFor(t, "the background refresh", func() bool {
		v.keys.mu.Lock()
		defer v.keys.mu.Unlock()
		return p.fetches.Load() == 4 && v.keys.inflight == nil
	})
	verify("k4 after the periodic refresh", mustSignKID(t, edKey2, "k4", jwksClaims()), true)
	verify("k2 after the periodic refresh", k2, false)
	if n := p.fetches.Load(); n != 4 {
		t.Fatalf("%d fetches, want 4", n)
	}
}

// TestJWKSFirstFetchFails: the service starts (NewVerifier returns no error and logs the
// failure) but refuses every token with 401 until a fetch succeeds; a later failure
// keeps the keys already loaded.
func TestJWKSFirstFetchFails(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p := newIDP(t, jwkOf(t, "k1", edKey))
	p.fail(http.StatusServiceUnavailable, []byte("down"))
	clk := &clock{t: time.Now()}
	var logs logBuffer
	v, err := NewVerifier(Config{JWKSURL: p.srv.URL, Audience: "chat"}, withNow(clk.Now), WithLogger(logs.logger()))
	if err != nil || v == nil {
		t.Fatalf("NewVerifier: %v, %v", v, err)
	}
	if !strings.Contains(logs.String(), "JWKS fetch failed") || !strings.Contains(logs.String(), "status 503") {
		t.Fatalf("the failed fetch is not logged:\n%s", logs.String())
	}
	tok := mustSignKID(t, edKey, "k1", jwksClaims())
	_, err = v.Verify(tok)
	if err == nil || Status(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "not available") {
		t.Fatalf("while the keys are missing: %v", err)
	}
	p.set(jwkOf(t, "k1", edKey))
	clk.Add(jwksMinInterval)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("after the provider recovered: %v", err)
	}
	// The provider fails again: the loaded keys stay.
	p.fail(http.StatusInternalServerError, nil)
	clk.Add(jwksDefaultRefresh)
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed refresh", func() bool { return strings.Count(logs.String(), "JWKS fetch failed") == 2 })
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("after a failed refresh: %v", err)
	}
}

// TestJWKSBounded: a provider that hangs delays start-up and a Verify by at most the fetch
// timeout; an oversized or useless key set is a failed fetch (401, keys not available).
func TestJWKSBounded(t *testing.T) {
	old := jwksTimeout
	jwksTimeout = 300 * time.Millisecond
	defer func() { jwksTimeout = old }()

	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hang.Close()
	defer close(release)
	clk := &clock{t: time.Now()}
	start := time.Now()
	v, err := NewVerifier(Config{JWKSURL: hang.URL, Audience: "*"}, withNow(clk.Now), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("start-up waited %v for a hanging provider", d)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	clk.Add(jwksMinInterval)
	start = time.Now()
	if _, err := v.Verify(mustSignKID(t, edKey, "k1", jwksClaims())); err == nil {
		t.Fatal("accepted without keys")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Verify waited %v for a hanging provider", d)
	}

	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384JWK := jwkOf(t, "p384", mustP256Shape(t))
	p384JWK["crv"] = "P-384"
	encJWK := jwkOf(t, "enc", edKey)
	encJWK["use"] = "enc"
	psJWK := jwkOf(t, "ps", mustRSA(t))
	psJWK["alg"] = "PS256"
	for name, body := range map[string][]byte{
		"too large": []byte(`{"keys":[` + strings.Repeat(" ", jwksMaxBytes) + `]}`),
		"not json":  []byte("<html>"),
		"no keys":   []byte(`{"keys":[]}`),
		"oct key":   []byte(`{"keys":[{"kty":"oct","kid":"s","k":"` + b64.EncodeToString([]byte(secret)) + `"}]}`),
		"RSA 1024":  mustJSON(t, map[string]any{"keys": []any{jwkOf(t, "small", rsa1024)}}),
		"P-384":     mustJSON(t, map[string]any{"keys": []any{p384JWK}}),
		"enc key":   mustJSON(t, map[string]any{"keys": []any{encJWK}}),
		"PS256 key": mustJSON(t, map[string]any{"keys": []any{psJWK}}),
		"no kid":    mustJSON(t, map[string]any{"keys": []any{jwkOf(t, "", edKey)}}),
		"off curve": []byte(`{"keys":[{"kty":"EC","kid":"c","crv":"P-256","x":"` + b64.EncodeToString(make([]byte, 32)) + `","y":"` + b64.EncodeToString(make([]byte, 32)) + `"}]}`),
	} {
		p := newIDP(t)
		p.fail(0, body)
		v, err := NewVerifier(Config{JWKSURL: p.srv.URL, Audience: "chat"}, WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err = v.Verify(mustSignKID(t, edKey, "k1", jwksClaims()))
		if err == nil || !strings.Contains(err.Error(), "not available") {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

// TestParseJWKSSkips: unusable keys are skipped, usable ones kept.
func TestParseJWKSSkips(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ec := mustP256Shape(t)
	body := mustJSON(t, map[string]any{"keys": []any{
		jwkOf(t, "ed", edKey), jwkOf(t, "ec", ec), jwkOf(t, "ed", ec), // duplicate kid: first wins
		map[string]any{"kty": "oct", "kid": "s", "k": "AAAA"}, map[string]any{"kty": "RSA", "kid": "r", "n": "!", "e": "AQAB"},
	}})
	keys, skipped, err := parseJWKS(body)
	if err != nil || len(keys) != 2 || skipped != 3 || keys["ed"].alg != EdDSA || keys["ec"].alg != ES256 {
		t.Fatalf("keys %v, skipped %d, err %v", keys, skipped, err)
	}
}

func mustP256Shape(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
