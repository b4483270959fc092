package chat

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits from the contract.
const (
	DefaultRoom     = "general"
	MaxRoomLen      = 64
	MaxNameRunes    = 64
	MaxMessageRunes = 4096
	MaxIDLen        = 128
)

// FieldError reports an invalid field. Its text is safe to show to clients.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func fieldErr(field, reason string) error { return &FieldError{Field: field, Reason: reason} }

// ValidRoom checks a room name: 1-64 characters of [A-Za-z0-9_-].
func ValidRoom(room string) error {
	if room == "" {
		return fieldErr("room", "must not be empty")
	}
	if len(room) > MaxRoomLen {
		return fieldErr("room", "must be at most 64 characters")
	}
	for i := 0; i < len(room); i++ {
		c := room[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fieldErr("room", "may contain only A-Z, a-z, 0-9, _ and -")
		}
	}
	return nil
}

// ValidID checks a message id (also an Idempotency-Key): 1-128 characters of [A-Za-z0-9_.:-].
func ValidID(id string) error {
	if id == "" {
		return fieldErr("id", "must not be empty")
	}
	if len(id) > MaxIDLen {
		return fieldErr("id", "must be at most 128 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '.' || c == ':' || c == '-') {
			return fieldErr("id", "may contain only A-Z, a-z, 0-9, _ . : and -")
		}
	}
	return nil
}

// NormalizeName trims the author name and checks it: non-empty, at most 64 code points,
// valid UTF-8, no control characters.
func NormalizeName(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", fieldErr("name", "must be valid UTF-8")
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return "", fieldErr("name", "must not be empty")
	}
	if utf8.RuneCountInString(name) > MaxNameRunes {
		return "", fieldErr("name", "must be at most 64 characters")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return "", fieldErr("name", "must not contain control characters")
		}
	}
	return name, nil
}

// NormalizeMessage turns \r\n and lone \r into \n, trims the text and checks it:
// non-empty, at most 4096 code points, valid UTF-8, no control characters but \n and \t.
func NormalizeMessage(text string) (string, error) {
	if !utf8.ValidString(text) {
		return "", fieldErr("message", "must be valid UTF-8")
	}
	if strings.IndexByte(text, '\r') >= 0 {
		text = strings.ReplaceAll(text, "\r\n", "\n")
		text = strings.ReplaceAll(text, "\r", "\n")
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return "", fieldErr("message", "must not be empty")
	}
	n := 0
	for _, r := range text {
		n++
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return "", fieldErr("message", "must not contain control characters other than newline and tab")
		}
	}
	if n > MaxMessageRunes {
		return "", fieldErr("message", "must be at most 4096 characters")
	}
	return text, nil
}
