package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/chatrt/chat/pkg/chat"
)

// Error is an authentication (401) or authorization (403) failure. Reason is safe to show
// to the client and to log (it never contains the token).
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return e.Reason }

func invalid(reason string) *Error { return &Error{Status: http.StatusUnauthorized, Reason: reason} }

// ErrNoToken is returned when a request carries no token.
var ErrNoToken = &Error{Status: http.StatusUnauthorized, Reason: "bearer token required"}

// Forbidden is the 403 for a room the token does not allow.
func Forbidden(room string) *Error {
	return &Error{Status: http.StatusForbidden, Reason: "token does not allow room " + room}
}

// Status is the HTTP status for err: an *Error's, else 401.
func Status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return http.StatusUnauthorized
}

// Claims are the token claims the chat reads.
type Claims struct {
	Subject   string       `json:"sub,omitempty"`
	Name      string       `json:"name,omitempty"`
	Rooms     Rooms        `json:"rooms,omitzero"` // nil is left out: every room; empty is []: none
	Roles     Roles        `json:"roles,omitempty"`
	Issuer    string       `json:"iss,omitempty"`
	Audience  Audience     `json:"aud,omitempty"`
	Expires   *NumericDate `json:"exp,omitempty"`
	NotBefore *NumericDate `json:"nbf,omitempty"`
	IssuedAt  *NumericDate `json:"iat,omitempty"`
}

// Author is the message author: the "name" claim, else "sub", normalized like a posted
// name.
func (c *Claims) Author() (string, error) {
	n := c.Name
	if strings.TrimSpace(n) == "" {
		n = c.Subject
	}
	name, err := chat.NormalizeName(n)
	if err != nil {
		return "", invalid("token has no usable name or sub claim")
	}
	return name, nil
}

// RoleModerator in a token's "roles" claim lets it edit and delete anyone's messages.
const RoleModerator = "moderator"

// RoleAdmin in a token's "roles" claim opens the api's admin page (/admin).
const RoleAdmin = "admin"

// AuthorID is the token's chat.AuthorID (its iss and sub), "" when it has no "sub": the
// id a post records as its author and a change to a message is checked against.
func (c *Claims) AuthorID() string { return chat.AuthorID(c.Issuer, c.Subject) }

// HasRole reports whether the "roles" claim lists role (exactly, case-sensitive).
func (c *Claims) HasRole(role string) bool { return slices.Contains(c.Roles, role) }

// Allows reports whether the token may post to or subscribe to room: any room when the
// token has no "rooms" claim, else a room matching one of its patterns ("rooms": null or
// [] match none).
func (c *Claims) Allows(room string) bool {
	if c.Rooms == nil {
		return true
	}
	for _, p := range c.Rooms {
		if Match(p, room) {
			return true
		}
	}
	return false
}

// Rooms is the "rooms" claim: a list of room names or glob patterns ("team-*", "*", "?"
// for one character), or one comma-separated string. Absent: every room (the field stays
// nil). null, [] or "": none (a non-nil empty list), so a token whose issuer wrote an
// empty value does not grant everything.
type Rooms []string

// UnmarshalJSON accepts a list of strings or a comma-separated string; null is no room.
func (r *Rooms) UnmarshalJSON(b []byte) error {
	l, err := stringList(b, "rooms")
	*r = append(Rooms{}, l...)
	return err
}

// Roles is the "roles" claim: a list of role names, or one comma-separated string (as
// "rooms" is). Absent, null, [] or "": no role.
type Roles []string

// UnmarshalJSON accepts a list of strings or a comma-separated string; null is no role.
func (r *Roles) UnmarshalJSON(b []byte) error {
	l, err := stringList(b, "roles")
	*r = nil
	if len(l) > 0 {
		*r = Roles(l)
	}
	return err
}

// stringList decodes a claim that is a list of strings or one comma-separated string
// (blanks dropped); null is the empty list.
func stringList(b []byte, claim string) ([]string, error) {
	if string(b) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(b, &s) == nil {
		return ParseRooms(s), nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, errors.New(claim + " must be a list of strings")
	}
	return l, nil
}

// ParseRooms splits a comma-separated list of room patterns, dropping blanks.
func ParseRooms(s string) Rooms {
	out := Rooms{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// validPattern: 1-64 characters of the room alphabet plus * and ?.
func validPattern(p string) bool {
	if p == "" || len(p) > chat.MaxRoomLen {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '*' || c == '?') {
			return false
		}
	}
	return true
}

// Match reports whether room matches the glob pattern: * is any run of characters, ? is
// one character, everything else matches itself (case-sensitive).
func Match(pattern, room string) bool {
	// Iterative glob with single-star backtracking: linear in practice, no recursion.
	p, s := 0, 0
	starP, starS := -1, 0
	for s < len(room) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == room[s]):
			p++
			s++
		case p < len(pattern) && pattern[p] == '*':
			starP, starS = p, s
			p++
		case starP >= 0:
			p = starP + 1
			starS++
			s = starS
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// FromRequest returns the request's bearer token: the Authorization header ("Bearer
// <token>"), else, if query is true (websocket upgrades: browsers cannot set headers), the
// access_token query parameter. "" when there is none.
func FromRequest(r *http.Request, query bool) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	if query {
		return r.URL.Query().Get("access_token")
	}
	return ""
}
