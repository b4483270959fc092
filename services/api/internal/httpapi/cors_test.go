package httpapi

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// corsHandler wraps a handler that records whether it ran and answers 405 to OPTIONS
// (as the routes do) and 200 otherwise.
func corsHandler(t *testing.T, allowed ...string) (http.Handler, *bool) {
	t.Helper()
	o, err := parseOrigins(allowed)
	if err != nil {
		t.Fatal(err)
	}
	called := new(bool)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*called = true
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusOK)
	})
	return (&Server{origins: o}).cors(next), called
}

func serve(h http.Handler, method, origin string, hdr ...string) *http.Response {
	req := httptest.NewRequest(method, "/rooms/general/messages", nil)
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func corsHeaders(resp *http.Response) []string {
	var out []string
	for k := range resp.Header {
		if strings.HasPrefix(k, "Access-Control-") {
			out = append(out, k)
		}
	}
	return out
}

func headerList(resp *http.Response, key string) []string {
	var out []string
	for _, v := range resp.Header.Values(key) {
		for _, s := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(s))
		}
	}
	return out
}

func preflight(h http.Handler, origin string) *http.Response {
	return serve(h, http.MethodOptions, origin,
		"Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization,content-type,idempotency-key")
}

func TestCORSPreflightAllowed(t *testing.T) {
	for _, allowed := range [][]string{{"http://app.example:3000"}, {"*"}, {" HTTP://App.Example:3000 ", "https://other.example"}} {
		h, called := corsHandler(t, allowed...)
		resp := preflight(h, "http://app.example:3000")
		if resp.StatusCode != http.StatusNoContent || *called {
			t.Errorf("%q: preflight status %d (handler ran: %v), want 204 answered by the CORS layer", allowed, resp.StatusCode, *called)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://app.example:3000" {
			t.Errorf("%q: Allow-Origin %q", allowed, got)
		}
		methods, headers := headerList(resp, "Access-Control-Allow-Methods"), headerList(resp, "Access-Control-Allow-Headers")
		for _, m := range []string{"GET", "POST", "PATCH", "DELETE"} {
			if !slices.Contains(methods, m) {
				t.Errorf("%q: Allow-Methods %q lacks %s", allowed, methods, m)
			}
		}
		for _, want := range []string{"Content-Type", "Authorization", "Idempotency-Key", "Edit-Key"} {
			if !slices.Contains(headers, want) {
				t.Errorf("%q: Allow-Headers %q lacks %s", allowed, headers, want)
			}
		}
		if !slices.Contains(headerList(resp, "Vary"), "Origin") {
			t.Errorf("%q: Vary %q lacks Origin", allowed, resp.Header.Values("Vary"))
		}
		if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%q: credentials allowed; bearer tokens need none", allowed)
		}
	}
}

func TestCORSPreflightRefused(t *testing.T) {
	h, called := corsHandler(t, "http://app.example:3000")
	for _, origin := range []string{"http://evil.example", "http://app.example:3001", "https://app.example:3000",
		"http://app.example", "null", "http://app.example:3000.evil.example"} {
		*called = false
		resp := preflight(h, origin)
		if got := corsHeaders(resp); len(got) != 0 {
			t.Errorf("preflight from %s: CORS headers %q", origin, got)
		}
		if !*called || resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("preflight from %s: status %d (handler ran: %v), want the route's own 405", origin, resp.StatusCode, *called)
		}
	}
	// "*" allows any origin but never the opaque "null" (sandboxed pages, local files).
	h, _ = corsHandler(t, "*")
	if got := corsHeaders(preflight(h, "null")); len(got) != 0 {
		t.Errorf(`"*" and Origin null: CORS headers %q`, got)
	}
}

func TestCORSSimpleRequests(t *testing.T) {
	h, called := corsHandler(t, "http://app.example:3000")
	resp := serve(h, http.MethodPost, "http://APP.example:3000")
	if !*called || resp.StatusCode != http.StatusOK {
		t.Fatalf("allowed POST: status %d, handler ran %v", resp.StatusCode, *called)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://APP.example:3000" {
		t.Errorf("allowed POST: Allow-Origin %q, want the request's Origin", got)
	}
	if !slices.Contains(headerList(resp, "Access-Control-Expose-Headers"), "Retry-After") {
		t.Errorf("allowed POST: Expose-Headers %q lacks Retry-After", resp.Header.Values("Access-Control-Expose-Headers"))
	}
	if !slices.Contains(headerList(resp, "Vary"), "Origin") {
		t.Errorf("allowed POST: Vary %q lacks Origin", resp.Header.Values("Vary"))
	}
	// An OPTIONS that is not a preflight is an ordinary request.
	*called = false
	if resp := serve(h, http.MethodOptions, "http://app.example:3000"); !*called || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("OPTIONS without Access-Control-Request-Method: status %d, handler ran %v", resp.StatusCode, *called)
	}

	for _, origin := range []string{"http://evil.example", ""} {
		*called = false
		resp := serve(h, http.MethodGet, origin)
		if !*called || resp.StatusCode != http.StatusOK {
			t.Errorf("GET from %q: status %d, handler ran %v", origin, resp.StatusCode, *called)
		}
		if got := corsHeaders(resp); len(got) != 0 {
			t.Errorf("GET from %q: CORS headers %q", origin, got)
		}
		if !slices.Contains(headerList(resp, "Vary"), "Origin") {
			t.Errorf("GET from %q: Vary %q lacks Origin (the answer depends on it)", origin, resp.Header.Values("Vary"))
		}
	}

	h, _ = corsHandler(t, "*")
	if got := serve(h, http.MethodGet, "https://anyone.example").Header.Get("Access-Control-Allow-Origin"); got != "https://anyone.example" {
		t.Errorf(`"*": Allow-Origin %q`, got)
	}

	// Without allowed origins nothing changes: same-origin only, as before.
	h, _ = corsHandler(t)
	resp = preflight(h, "http://app.example:3000")
	if got := corsHeaders(resp); len(got) != 0 || resp.Header.Get("Vary") != "" || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("no allowed origins: status %d, CORS headers %q, Vary %q", resp.StatusCode, got, resp.Header.Get("Vary"))
	}
}

func TestParseOriginsRefusesNonOrigins(t *testing.T) {
	for _, bad := range []string{"null", "app.example", "ftp://app.example", "http://", "http://app.example/path",
		"http://app.example?x=1", "http://user@app.example", "http://app.example#x", "*.example.com"} {
		if _, err := parseOrigins([]string{"http://ok.example", bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	o, err := parseOrigins([]string{"", " https://a.example:8443/ ", "http://[::1]:8080"})
	if err != nil {
		t.Fatal(err)
	}
	if !o.allows("https://A.example:8443") || !o.allows("http://[::1]:8080") || o.allows("https://a.example") || o.any {
		t.Errorf("parsed %+v", o)
	}
}
