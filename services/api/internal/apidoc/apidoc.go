// Package apidoc serves the api's OpenAPI document at GET /openapi.json. The document is
// docs/openapi.yaml at the repository root; openapi.json here is its JSON form (the api
// module cannot embed files outside its directory), regenerated and kept equal to the
// YAML by this package's test: go test ./services/api/internal/apidoc -update.
package apidoc

import (
	_ "embed"
	"net/http"
	"strconv"
)

//go:embed openapi.json
var document []byte

// Document is the OpenAPI document as JSON.
func Document() []byte { return document }

// Handler answers the document (GET and HEAD; the caller routes the method).
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Length", strconv.Itoa(len(document)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(document)
		}
	})
}
