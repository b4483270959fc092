package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/golang-jwt/jwt/v5"
)

const secret = "0123456789abcdef0123456789abcdef"

func claims(mod func(m map[string]any)) map[string]any {
	m := map[string]any{"sub": "ann", "exp": time.Now().Add(time.Hour).Unix()}
	if mod != nil {
		mod(m)
	}
	return m
}

func mustSign(t *testing.T, key any, c any) string {
	t.Helper()
	tok, err := Sign(key, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func pemPublic(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestDisabled(t *testing.T) {
	v, err := NewVerifier(Config{})
	if v != nil || err != nil {
		t.Fatalf("disabled config gave %v, %v", v, err)
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"short secret":    {HS256Secret: "short"},
		"two keys":        {HS256Secret: secret, PublicKey: "x"},
		"not pem":         {PublicKey: "nope"},
		"missing file":    {PublicKeyFile: "/nonexistent/key.pem"},
		"garbage block":   {PublicKey: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", Audience: "chat"},
		"jwks and secret": {HS256Secret: secret, JWKSURL: "https://idp.example/jwks", Audience: "chat"},
		"jwks not http":   {JWKSURL: "file:///etc/jwks.json", Audience: "chat"},
	} {
		if _, err := NewVerifier(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestAudienceRequired: a public key or a JWKS usually belongs to an identity provider that
// signs tokens for other applications too, so the verifier refuses to start without
// CHAT_AUTH_AUDIENCE; "*" is the explicit opt-out. An HS256 secret is the chat's own and
// keeps the audience optional.
func TestAudienceRequired(t *testing.T) {
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	pub := pemPublic(t, edPub)
	keyFile := filepath.Join(t.TempDir(), "ed.pem")
	if err := os.WriteFile(keyFile, []byte(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]Config{
		"public key":      {PublicKey: pub},
		"public key file": {PublicKeyFile: keyFile},
		"jwks":            {JWKSURL: "https://idp.example/jwks"},
	} {
		if _, err := NewVerifier(cfg); err == nil || !strings.Contains(err.Error(), "CHAT_AUTH_AUDIENCE") {
			t.Errorf("%s without audience: err %v", name, err)
		}
	}
	if _, err := NewVerifier(Config{HS256Secret: secret}); err != nil {
		t.Errorf("HS256 without audience: %v", err)
	}
	anyAud, err := NewVerifier(Config{PublicKey: pub, Audience: "*"})
	if err != nil {
		t.Fatal(err)
	}
	chat, err := NewVerifier(Config{PublicKey: pub, Audience: "chat"})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		aud        any
		any, exact bool
	}{
		"no aud":      {nil, true, false},
		"other app":   {"billing", true, false},
		"chat":        {"chat", true, true},
		"chat listed": {[]string{"billing", "chat"}, true, true},
	} {
		tok := mustSign(t, edKey, claims(func(m map[string]any) {
			if c.aud != nil {
				m["aud"] = c.aud
			}
		}))
		if _, err := anyAud.Verify(tok); (err == nil) != c.any {
			t.Errorf("%s, audience *: err %v", name, err)
		}
		if _, err := chat.Verify(tok); (err == nil) != c.exact {
			t.Errorf("%s, audience chat: err %v", name, err)
		}
	}
}

func TestAlgorithms(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewVerifier(Config{PublicKey: pemPublic(t, &p384.PublicKey), Audience: "*"}); err == nil {
		t.Error("P-384 key accepted (ES256 needs P-256)")
	}
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	keyFile := filepath.Join(t.TempDir(), "ed.pem")
	if err := os.WriteFile(keyFile, []byte(pemPublic(t, edPub)), 0o600); err != nil {
		t.Fatal(err)
	}
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)}))
	hs, _ := NewVerifier(Config{HS256Secret: secret})
	rs, err := NewVerifier(Config{PublicKey: pemPublic(t, &rsaKey.PublicKey), Audience: "*"})
	if err != nil {
		t.Fatal(err)
	}
	rs1, err := NewVerifier(Config{PublicKey: pkcs1, Audience: "*"})
	if err != nil {
		t.Fatal(err)
	}
	ed, err := NewVerifier(Config{PublicKeyFile: keyFile, Audience: "*"})
	if err != nil {
		t.Fatal(err)
	}
	es, err := NewVerifier(Config{PublicKey: pemPublic(t, &ecKey.PublicKey), Audience: "*"})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]any{HS256: []byte(secret), RS256: rsaKey, EdDSA: edKey, ES256: ecKey}
	verifiers := map[string][]*Verifier{HS256: {hs}, RS256: {rs, rs1}, EdDSA: {ed}, ES256: {es}}
	for valg, vs := range verifiers {
		for _, v := range vs {
			for kalg, key := range keys {
				tok := mustSign(t, key, claims(nil))
				_, err := v.Verify(tok)
				if (err == nil) != (valg == kalg) {
					t.Errorf("verifier %s, token %s: err %v", valg, kalg, err)
				}
			}
		}
	}
	// An HS256 token whose secret is the RSA public key PEM (the classic alg confusion).
	conf := mustSign(t, []byte(pemPublic(t, &rsaKey.PublicKey)), claims(nil))
	if _, err := rs.Verify(conf); err == nil {
		t.Error("RS256 verifier accepted an HS256 token signed with its public key")
	}
	// alg none.
	parts := strings.Split(mustSign(t, []byte(secret), claims(nil)), ".")
	none := b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "."
	if _, err := hs.Verify(none); err == nil {
		t.Error("alg none accepted")
	}
	// An ES256 token from another P-256 key.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := es.Verify(mustSign(t, other, claims(nil))); err == nil {
		t.Error("ES256 verifier accepted another key's token")
	}
}

func TestVerifyMatrix(t *testing.T) {
	v, err := NewVerifier(Config{HS256Secret: secret, Issuer: "chat-idp", Audience: "chat", Leeway: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ok := func(m map[string]any) { m["iss"] = "chat-idp"; m["aud"] = "chat" }
	good := mustSign(t, []byte(secret), claims(ok))
	parts := strings.Split(good, ".")
	cases := map[string]struct {
		tok  string
		want bool
	}{
		"good":                {good, true},
		"aud list":            {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); m["aud"] = []string{"x", "chat"} })), true},
		"expired in leeway":   {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); m["exp"] = now.Add(-5 * time.Second).Unix() })), true},
		"expired":             {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); m["exp"] = now.Add(-time.Minute).Unix() })), false},
		"no exp":              {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); delete(m, "exp") })), false},
		"exp string":          {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); m["exp"] = "tomorrow" })), false},
		"nbf future":          {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); m["nbf"] = now.Add(time.Minute).Unix() })), false},
		"nbf in leeway":       {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); m["nbf"] = now.Add(5 * time.Second).Unix() })), true},
		"iat future":          {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); m["iat"] = now.Add(time.Minute).Unix() })), false},
		"iat in leeway":       {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); m["iat"] = now.Add(5 * time.Second).Unix() })), true},
		"no aud":              {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); delete(m, "aud") })), false},
		"no iss":              {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); delete(m, "iss") })), false},
		"crit header":         {critToken(t, claims(ok)), false},
		"wrong iss":           {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); m["iss"] = "evil" })), false},
		"wrong aud":           {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); m["aud"] = "other" })), false},
		"no name":             {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); delete(m, "sub") })), false},
		"control in name":     {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); m["name"] = "a\x00b" })), false},
		"bad room pattern":    {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); m["rooms"] = []string{"a/b"} })), false},
		"rooms not strings":   {mustSign(t, []byte(secret), claims(func(m map[string]any) { ok(m); m["rooms"] = []int{1} })), false},
		"wrong secret":        {mustSign(t, []byte(secret+"x"), claims(ok)), false},
		"tampered payload":    {parts[0] + "." + b64.EncodeToString([]byte(`{"sub":"eve","exp":9999999999,"iss":"chat-idp","aud":"chat"}`)) + "." + parts[2], false},
		"two parts":           {parts[0] + "." + parts[1], false},
		"four parts":          {good + ".x", false},
		"empty":               {"", false},
		"garbage":             {"a.b.c", false},
		"huge":                {strings.Repeat("a", MaxTokenBytes+1), false},
		"payload not base64":  {parts[0] + ".!!!." + parts[2], false},
		"payload not an obj":  {mustSign(t, []byte(secret), []int{1}), false},
		"signature truncated": {good[:len(good)-4], false},
	}
	for name, c := range cases {
		_, err := v.Verify(c.tok)
		if (err == nil) != c.want {
			t.Errorf("%s: err %v, want ok=%v", name, err, c.want)
		}
		if err != nil && Status(err) != http.StatusUnauthorized {
			t.Errorf("%s: status %d", name, Status(err))
		}
		if err != nil && strings.Contains(err.Error(), c.tok) && c.tok != "" {
			t.Errorf("%s: error text contains the token", name)
		}
	}
}

func TestAuthorAndRooms(t *testing.T) {
	v, _ := NewVerifier(Config{HS256Secret: secret})
	c, err := v.Verify(mustSign(t, []byte(secret), claims(func(m map[string]any) {
		m["name"] = "  Ann Smith "
		m["rooms"] = "general, team-*"
	})))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := c.Author(); a != "Ann Smith" {
		t.Fatalf("author %q", a)
	}
	for room, want := range map[string]bool{"general": true, "team-a": true, "team-": true, "team": false, "General": false, "random": false} {
		if c.Allows(room) != want {
			t.Errorf("room %s: allowed %v", room, !want)
		}
	}
	c, _ = v.Verify(mustSign(t, []byte(secret), claims(nil)))
	if a, _ := c.Author(); a != "ann" || !c.Allows("anything") {
		t.Fatalf("sub as author / no rooms claim: %q %v", a, c.Allows("anything"))
	}
	// "rooms": null grants no room: an issuer that writes an empty value must not grant
	// every room (only an absent claim does).
	for rooms, want := range map[string]bool{"[]": false, "null": false, `""`: false, `"*"`: true} {
		c, err = v.Verify(mustSign(t, []byte(secret), claims(func(m map[string]any) { m["rooms"] = json.RawMessage(rooms) })))
		if err != nil || c.Allows("general") != want {
			t.Fatalf("rooms %s: err %v, allows general %v", rooms, err, !want)
		}
	}
	// Claims round-trip through Sign: an empty list stays "no room", nil stays "every room".
	for _, rooms := range []Rooms{{}, nil} {
		c, err = v.Verify(mustSign(t, []byte(secret), Claims{Subject: "x", Rooms: rooms, Expires: NewNumericDate(time.Now().Add(time.Minute))}))
		if err != nil || c.Allows("general") != (rooms == nil) {
			t.Fatalf("rooms %#v: err %v", rooms, err)
		}
	}
}

// TestRoles: "roles" is a list or a comma-separated string; absent, null, [] and "" are no
// role; anything else is an invalid token. AuthorID is chat.AuthorID of iss and sub.
func TestRoles(t *testing.T) {
	v, _ := NewVerifier(Config{HS256Secret: secret})
	for raw, want := range map[string][]string{
		`["moderator","x"]`: {"moderator", "x"}, `"x, moderator"`: {"x", "moderator"}, `"moderator"`: {"moderator"},
		`[]`: nil, `null`: nil, `""`: nil, `"Moderator"`: {"Moderator"},
	} {
		c, err := v.Verify(mustSign(t, []byte(secret), claims(func(m map[string]any) { m["roles"] = json.RawMessage(raw) })))
		if err != nil {
			t.Fatalf("roles %s: %v", raw, err)
		}
		if len(c.Roles) != len(want) || c.HasRole(RoleModerator) != slices.Contains(want, RoleModerator) {
			t.Errorf("roles %s: got %q, moderator %v", raw, c.Roles, c.HasRole(RoleModerator))
		}
	}
	c, err := v.Verify(mustSign(t, []byte(secret), claims(nil)))
	if err != nil || c.Roles != nil || c.HasRole(RoleModerator) {
		t.Fatalf("no roles claim: %v %q", err, c.Roles)
	}
	for _, raw := range []string{`1`, `[1]`, `{"a":"moderator"}`} {
		_, err := v.Verify(mustSign(t, []byte(secret), claims(func(m map[string]any) { m["roles"] = json.RawMessage(raw) })))
		if err == nil || Status(err) != http.StatusUnauthorized {
			t.Errorf("roles %s: err %v, want 401", raw, err)
		}
	}
	c, _ = v.Verify(mustSign(t, []byte(secret), claims(func(m map[string]any) { m["iss"] = "idp"; m["name"] = "Ann" })))
	if c.AuthorID() != chat.AuthorID("idp", "ann") || c.AuthorID() == "" {
		t.Fatalf("AuthorID %q", c.AuthorID())
	}
	c, _ = v.Verify(mustSign(t, []byte(secret), claims(func(m map[string]any) { delete(m, "sub"); m["name"] = "Ann" })))
	if c.AuthorID() != "" {
		t.Fatalf("AuthorID without sub %q, want empty", c.AuthorID())
	}
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"*", "x", true}, {"*", "", true}, {"a*", "a", true}, {"a*b", "axxb", true}, {"a*b", "axxbc", false},
		{"*-*", "team-a", true}, {"?", "ab", false}, {"a?c", "abc", true}, {"abc", "abd", false},
		{"*a*a*a*a*b", strings.Repeat("a", 64), false}, {"", "", true}, {"", "a", false},
	} {
		if Match(c.p, c.s) != c.want {
			t.Errorf("Match(%q, %q) != %v", c.p, c.s, c.want)
		}
	}
}

func TestFromRequest(t *testing.T) {
	r := httptest.NewRequest("GET", "/ws?access_token=q", nil)
	if FromRequest(r, false) != "" || FromRequest(r, true) != "q" {
		t.Fatal("query token")
	}
	r.Header.Set("Authorization", "bearer h")
	if FromRequest(r, true) != "h" {
		t.Fatal("header token wins")
	}
	r.Header.Set("Authorization", "Basic h")
	if FromRequest(r, true) != "" {
		t.Fatal("basic auth is not a token")
	}
}

func FuzzVerify(f *testing.F) {
	v, _ := NewVerifier(Config{HS256Secret: secret})
	// An ES256 public-key verifier too: the library's ECDSA path and the key-pinned alg.
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	es, err := NewVerifier(Config{PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), Audience: "*"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(mustSignF(f, claims(nil)))
	esTok, err := SignWithKeyID(ecKey, "k1", claims(nil))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(esTok)
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		for _, v := range []*Verifier{v, es} {
			c, err := v.Verify(tok)
			if err == nil && c == nil {
				t.Fatal("nil claims without error")
			}
			if err != nil && Status(err) != http.StatusUnauthorized {
				t.Fatalf("status %d", Status(err))
			}
		}
	})
}

// critToken is an HS256 token with a "crit" header (RFC 7515 4.1.11: an extension the
// verifier does not understand must make it refuse the token).
func critToken(t *testing.T, c any) string {
	t.Helper()
	h := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","crit":["exp"]}`))
	p, _ := json.Marshal(c)
	signing := h + "." + b64.EncodeToString(p)
	sig, err := jwtHS256.Sign(signing, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + b64.EncodeToString(sig)
}

func mustSignF(f *testing.F, c any) string {
	tok, err := Sign([]byte(secret), c)
	if err != nil {
		f.Fatal(err)
	}
	return tok
}

var jwtHS256 = jwt.SigningMethodHS256
