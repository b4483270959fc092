package httpapi

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/chatrt/chat/pkg/chat"
)

const contentTypeJSON = "application/json; charset=utf-8"

// writeError answers {"error": reason} with status.
func writeError(w http.ResponseWriter, status int, reason string) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		Error string `json:"error"`
	}{reason})
	writeBody(w, status, buf.Bytes())
}

// writeRetry answers an error with a Retry-After header (whole seconds, at least 1).
func writeRetry(w http.ResponseWriter, status int, after time.Duration, reason string) {
	secs := int64(math.Ceil(after.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	writeError(w, status, reason)
}

func writeMessage(w http.ResponseWriter, status int, m *chat.Message) {
	writeBody(w, status, m.AppendJSON(make([]byte, 0, 256+len(m.Message)), ""))
}

// writeMessages answers a JSON array of messages ([] when empty).
func writeMessages(w http.ResponseWriter, msgs []chat.Message) {
	n := 2
	for i := range msgs {
		n += 160 + len(msgs[i].Name) + len(msgs[i].Message)
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = msgs[i].AppendJSON(b, "")
	}
	b = append(b, ']')
	writeBody(w, http.StatusOK, b)
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = typeJSON
	h["Cache-Control"] = cacheNoStore
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
