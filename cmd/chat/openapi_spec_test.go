package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/nats-io/nats.go/jetstream"
)

// The OpenAPI document (docs/openapi.yaml) checked against real answers with
// kin-openapi's openapi3filter: every answer a test gets through apiSpec.do must be a
// response the document lists for that operation (status, headers, body schema), and every
// request answered with success must be one the document accepts. At the end the test
// fails if a response the document lists was never seen (unless listed in unreached with
// the reason), so the document cannot promise more than the code does either.

const openAPIPath = "../../docs/openapi.yaml"

// apiSpec is the loaded document and what the tests have seen of it.
type apiSpec struct {
	doc    *openapi3.T
	router routers.Router

	mu   sync.Mutex
	seen map[string]bool // "METHOD /path/template STATUS"
}

var registerDecoders sync.Once

func loadAPISpec(t *testing.T) *apiSpec {
	t.Helper()
	registerDecoders.Do(func() {
		// The UI's files are text to the validator (their schema is a string).
		for _, ct := range []string{"text/html", "text/javascript", "text/css", "image/svg+xml"} {
			openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
		}
	})
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(openAPIPath)
	if err != nil {
		t.Fatalf("%s: %v", openAPIPath, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", openAPIPath, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Fatalf("%s: openapi %s, want 3.1.x", openAPIPath, doc.OpenAPI)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &apiSpec{doc: doc, router: router, seen: map[string]bool{}}
}

// since is an operation's x-chat-since ("" for v1).
func since(op *openapi3.Operation) string {
	s, _ := op.Extensions["x-chat-since"].(string)
	return s
}

// buildingVersion is a contract version being built on another branch: its routes,
// frames and fields may be documented before any test can require them. "" when none
// (now: v1.3 has landed and is covered). When the next version is documented ahead of
// its code, set it here; when it lands, set "" and add its cases (one line each in
// openapi_test.go; frames and subjects in asyncapi_test.go): the coverage checks then
// require every one of its responses and messages.
const buildingVersion = ""

// pending reports whether an operation belongs to buildingVersion.
func pending(op *openapi3.Operation) bool {
	return buildingVersion != "" && since(op) == buildingVersion
}

// httpCase is one request and the status it must get; its answer is validated against
// the document. Placeholders {name} in path, body and headers are the fixture's values.
type httpCase struct {
	srv    string // "": the all-in-one; "auth": the all-in-one with authentication; "api", "pusher", "persister": that service alone
	method string
	path   string
	body   string   // JSON unless hdr sets Content-Type
	hdr    []string // "Name: value"
	want   int
}

// fixture is the servers and the values cases refer to.
type fixture struct {
	base map[string]string // srv → base URL
	vals map[string]string
	js   jetstream.JetStream // the NATS of "" (and of "api", "pusher", "persister")
}

func (f *fixture) expand(s string) string {
	for k, v := range f.vals {
		s = strings.ReplaceAll(s, "{"+k+"}", v)
	}
	return s
}

var specClient = &http.Client{Timeout: 20 * time.Second}

// do sends c's request, checks its status and validates request and answer against the
// document; it returns the answer's headers and body.
func (s *apiSpec) do(t *testing.T, f *fixture, c httpCase) (http.Header, []byte) {
	t.Helper()
	base, ok := f.base[c.srv]
	if !ok {
		t.Fatalf("no server %q", c.srv)
	}
	body := f.expand(c.body)
	req, err := http.NewRequest(c.method, base+f.expand(c.path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range c.hdr {
		k, v, _ := strings.Cut(f.expand(h), ": ")
		req.Header.Set(k, v)
	}
	resp, err := specClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, req.URL, err)
	}
	var rb []byte
	if resp.StatusCode != http.StatusSwitchingProtocols {
		rb, err = io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, req.URL, err)
		}
	}
	resp.Body.Close()
	if resp.StatusCode != c.want {
		t.Fatalf("%s %s: status %d, want %d: %s", c.method, req.URL, resp.StatusCode, c.want, short(rb))
	}
	req.Body = io.NopCloser(strings.NewReader(body))
	s.validate(t, req, resp, rb)
	return resp.Header, rb
}

// validate checks an answer (and, when it is a success, its request) against the document
// and records it as seen.
func (s *apiSpec) validate(t *testing.T, req *http.Request, resp *http.Response, body []byte) {
	t.Helper()
	// The router matches on the path alone: the servers' addresses are the test's.
	u := *req.URL
	u.Scheme, u.Host = "", ""
	r2 := req.Clone(req.Context())
	r2.URL, r2.Host = &u, ""
	route, params, err := s.router.FindRoute(r2)
	if err != nil {
		t.Fatalf("%s %s: not in %s: %v", req.Method, req.URL.Path, openAPIPath, err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: r2, PathParams: params, Route: route, Options: opts}
	ctx := context.Background()
	if resp.StatusCode < 400 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Errorf("%s %s was answered %d but the document refuses the request: %v", req.Method, req.URL, resp.StatusCode, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
		Header: resp.Header, Body: io.NopCloser(bytes.NewReader(body)), Options: opts}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s %s: answer %d %s does not match the document: %v", req.Method, req.URL, resp.StatusCode, short(body), err)
	}
	s.mu.Lock()
	s.seen[req.Method+" "+route.Path+" "+strconv.Itoa(resp.StatusCode)] = true
	s.mu.Unlock()
}

// checkCoverage fails for every response the document lists that no case got, unless
// unreached says why a test cannot get it. Operations of a version still being built
// (pending) are exempt.
func (s *apiSpec) checkCoverage(t *testing.T, unreached map[string]string) {
	t.Helper()
	var missing []string
	for _, path := range s.doc.Paths.InMatchingOrder() {
		for method, op := range s.doc.Paths.Value(path).Operations() {
			if pending(op) {
				continue
			}
			for code := range op.Responses.Map() {
				key := method + " " + path + " " + code
				if s.seen[key] {
					if why, ok := unreached[key]; ok {
						t.Errorf("%s is listed as unreached (%s) but a case got it: drop it from the list", key, why)
					}
					continue
				}
				if _, ok := unreached[key]; !ok {
					missing = append(missing, key)
				}
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("documented responses no case got (add a case, or list it in unreached with why):\n%s", strings.Join(missing, "\n"))
	}
}

// checkMethodNotAllowed sends each api path a method it does not serve (PUT): 405, Allow
// lists exactly the methods the document gives the path (HEAD with GET), body an Error.
func (s *apiSpec) checkMethodNotAllowed(t *testing.T, base string) {
	t.Helper()
	errSchema := s.doc.Components.Schemas["Error"].Value
	for _, path := range s.doc.Paths.InMatchingOrder() {
		item := s.doc.Paths.Value(path)
		if !slices.Contains(tagsOf(item), "api") || anyPending(item) {
			continue // the pusher's and persister's routers answer in plain text
		}
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPatch, http.MethodDelete} {
			if item.GetOperation(m) != nil || m == http.MethodHead && item.Get != nil {
				allow = append(allow, m)
			}
		}
		req, _ := http.NewRequest(http.MethodPut, base+samplePath(path), nil)
		resp, err := specClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var v any
		_ = json.Unmarshal(body, &v)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != strings.Join(allow, ", ") {
			t.Errorf("PUT %s: %d Allow %q, want 405 Allow %q", path, resp.StatusCode, resp.Header.Get("Allow"), strings.Join(allow, ", "))
		}
		if err := errSchema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			t.Errorf("PUT %s: 405 body %s is not an Error: %v", path, body, err)
		}
	}
}

func anyPending(item *openapi3.PathItem) bool {
	for _, op := range item.Operations() {
		if pending(op) {
			return true
		}
	}
	return false
}

func tagsOf(item *openapi3.PathItem) []string {
	var tags []string
	for _, op := range item.Operations() {
		tags = append(tags, op.Tags...)
	}
	return tags
}

// samplePath fills a path template's parameters with valid values.
func samplePath(path string) string {
	return strings.NewReplacer("{room}", "spec", "{id}", "sample-id", "{emoji}", "x", "{seq}", "1").Replace(path)
}

// checkRoutesDocumented: every route a service's mux serves is documented with the
// service's tag, and every documented operation tagged with a service is served by it
// (operations of a version still being built may be missing).
func (s *apiSpec) checkRoutesDocumented(t *testing.T, service string, routes []string) {
	t.Helper()
	mux := http.NewServeMux()
	for _, r := range routes {
		method, pattern, ok := strings.Cut(r, " ")
		if !ok {
			t.Fatalf("%s route %q: want METHOD /pattern", service, r)
		}
		// A pattern ending in {$} (exactly that path, no subtree) is that path in the document.
		item := s.doc.Paths.Value(strings.TrimSuffix(pattern, "{$}"))
		var op *openapi3.Operation
		if item != nil {
			op = item.GetOperation(method)
		}
		if op == nil {
			t.Errorf("%s serves %s, which %s does not document", service, r, openAPIPath)
		} else if !slices.Contains(op.Tags, service) {
			t.Errorf("%s serves %s, documented without the tag %s (tags %v)", service, r, service, op.Tags)
		}
		mux.Handle(r, http.NotFoundHandler())
	}
	for _, path := range s.doc.Paths.InMatchingOrder() {
		for method, op := range s.doc.Paths.Value(path).Operations() {
			if !slices.Contains(op.Tags, service) || method == http.MethodOptions {
				continue
			}
			req, _ := http.NewRequest(method, "http://x"+samplePath(path), nil)
			if _, pattern := mux.Handler(req); pattern == "" && !pending(op) {
				t.Errorf("%s documents %s %s for %s, which does not serve it", openAPIPath, method, path, service)
			}
		}
	}
}

func short(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}
