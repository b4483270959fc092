package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// formBody is a request body's fields: each a string, nil when absent. Its struct's json
// tags name them for JSON bodies, formFields for form bodies.
type formBody interface {
	formFields() []formField
}

// formField is one field of a form body and where its value goes.
type formField struct {
	key string
	dst **string
}

// readBody checks a body's content type and size, reads it and decodes it into b: the
// same checks, in the same order, for every route that takes a body (posts, edits,
// reactions). 415 for a content type other than JSON or a form, 413 over MaxBodyBytes,
// 400 for a body that does not decode.
func readBody(w http.ResponseWriter, r *http.Request, b formBody) *httpError {
	kind, herr := bodyKind(r.Header.Get("Content-Type"))
	if herr != nil {
		return herr
	}
	if r.ContentLength > MaxBodyBytes {
		return tooLarge()
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge()
		}
		return badRequest("reading body: %v", err)
	}
	if kind == "json" {
		return decodeJSON(data, b)
	}
	return decodeForm(data, b)
}

func tooLarge() *httpError {
	return &httpError{status: http.StatusRequestEntityTooLarge, reason: "body larger than " + strconv.Itoa(MaxBodyBytes) + " bytes"}
}

// bodyKind accepts application/json and application/x-www-form-urlencoded (charset, if
// given, must be UTF-8); anything else, or no Content-Type, is 415.
func bodyKind(contentType string) (string, *httpError) {
	unsupported := &httpError{status: http.StatusUnsupportedMediaType,
		reason: "Content-Type must be application/json or application/x-www-form-urlencoded"}
	if contentType == "" {
		return "", unsupported
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", unsupported
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return "", &httpError{status: http.StatusUnsupportedMediaType, reason: "charset must be utf-8"}
	}
	switch mt {
	case "application/json":
		return "json", nil
	case "application/x-www-form-urlencoded":
		return "form", nil
	}
	return "", unsupported
}

func decodeJSON(data []byte, b formBody) *httpError {
	// encoding/json would silently turn invalid UTF-8 into U+FFFD.
	if !utf8.Valid(data) {
		return badRequest("body must be valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(b); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field != "" {
				return badRequest("invalid JSON: %s must be a string", te.Field)
			}
			return badRequest("invalid JSON: body must be an object")
		}
		return badRequest("invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("invalid JSON: unexpected data after the object")
	}
	return nil
}

func decodeForm(data []byte, b formBody) *httpError {
	vals, err := url.ParseQuery(string(data))
	if err != nil {
		return badRequest("invalid form body: %v", err)
	}
	for _, f := range b.formFields() {
		if v, ok := vals[f.key]; ok {
			if len(v) != 1 {
				return badRequest("%s: give exactly one", f.key)
			}
			*f.dst = &v[0]
		}
	}
	return nil
}
