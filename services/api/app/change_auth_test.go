package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/services/api/app"
)

// TestChangesWithAuth: with authentication on, a message may be changed by its author
// (the token's iss and sub) or a moderator; reactions are by the token's AuthorID; the
// token must allow the room; the 201 has no edit key and Edit-Key opens nothing.
func TestChangesWithAuth(t *testing.T) {
	e := newEnv(t, func(c *app.Config) { c.HS256Secret = testSecret })
	key := []byte(testSecret)
	bearer := func(claims map[string]any) []string {
		return []string{"Authorization", "Bearer " + token(t, key, claims), "Content-Type", "application/json"}
	}
	ann := bearer(map[string]any{"sub": "ann", "name": "Ann", "rooms": []string{"general", "team-*"}})
	annRenamed := bearer(map[string]any{"sub": "ann", "name": "Ann B."}) // same person, another name
	bob := bearer(map[string]any{"sub": "bob", "name": "Ann"})           // another person, same name
	mod := bearer(map[string]any{"sub": "mia", "roles": "moderator"})
	modElsewhere := bearer(map[string]any{"sub": "mia", "roles": []string{"moderator"}, "rooms": []string{"other"}})
	otherIssuer := bearer(map[string]any{"sub": "ann", "iss": "elsewhere"})
	nameOnly := bearer(map[string]any{"name": "Nobody"}) // no sub: no AuthorID

	resp, body := e.postJSON("/rooms/general/messages", `{"message":"by ann"}`, ann...)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("post: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "edit_key") {
		t.Fatalf("201 with auth on carries an edit key: %s", body)
	}
	m := decodeMessage(t, body)
	e.persist(m.Seq)
	path := msgPath(m)
	annID := chat.AuthorID("", "ann")

	for _, c := range []struct {
		name     string
		method   string
		path     string
		body     string
		hdr      []string
		status   int
		contains string
	}{
		{"no token", "PATCH", path, `{"message":"x"}`, []string{"Content-Type", "application/json"}, 401, ""},
		{"no token, delete", "DELETE", path, ``, nil, 401, ""},
		{"no token, react", "POST", path + "/reactions", `{"emoji":"👍","name":"Ann"}`, []string{"Content-Type", "application/json"}, 401, ""},
		{"another person", "PATCH", path, `{"message":"x"}`, bob, 403, ""},
		{"another person with the edit key header", "PATCH", path, `{"message":"x"}`, append(bob, "Edit-Key", "anything"), 403, ""},
		{"same sub, other issuer", "PATCH", path, `{"message":"x"}`, otherIssuer, 403, ""},
		{"token without sub", "PATCH", path, `{"message":"x"}`, nameOnly, 403, ""},
		{"moderator without the room", "PATCH", path, `{"message":"x"}`, modElsewhere, 403, ""},
		{"another person deletes", "DELETE", path, ``, bob, 403, ""},
		{"author", "PATCH", path, `{"message":"edited by ann"}`, ann, 200, `"message":"edited by ann"`},
		{"author renamed", "PATCH", path, `{"message":"edited again"}`, annRenamed, 200, `"name":"Ann"`},
		{"moderator", "PATCH", path, `{"message":"moderated"}`, mod, 200, `"message":"moderated"`},
		{"reaction by ann", "POST", path + "/reactions", `{"emoji":"👍","name":"bob"}`, ann, 200, `"reactions":{"👍":1}`},
		{"reaction by bob", "POST", path + "/reactions", `{"emoji":"👍"}`, bob, 200, `"reactions":{"👍":2}`},
		{"bob removes (name ignored)", "DELETE", path + "/reactions/👍?name=Ann", ``, bob, 200, `"reactions":{"👍":1}`},
		{"bob again: nothing to remove", "DELETE", path + "/reactions/👍", ``, bob, 200, `"reactions":{"👍":1}`},
		{"reaction without sub", "POST", path + "/reactions", `{"emoji":"👍"}`, nameOnly, 403, ""},
		{"reaction in a room the token lacks", "POST", path + "/reactions", `{"emoji":"👍"}`, modElsewhere, 403, ""},
		{"moderator deletes", "DELETE", path, ``, mod, 200, `"deleted":true`},
		{"author deletes again", "DELETE", path, ``, ann, 200, `"deleted":true`},
		{"another person deletes a deleted one", "DELETE", path, ``, bob, 403, ""},
		{"author edits a deleted one", "PATCH", path, `{"message":"x"}`, ann, 409, ""},
	} {
		before := e.count()
		resp, body := e.do(c.method, c.path, c.body, c.hdr...)
		if c.status != http.StatusOK {
			wantError(t, resp, body, c.status)
			if e.count() != before {
				t.Errorf("%s: a refused change was published", c.name)
			}
			continue
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), c.contains) {
			t.Errorf("%s: %d %s, want 200 with %s", c.name, resp.StatusCode, body, c.contains)
		}
	}
	// A change records who made it: the reactions event of ann carries her AuthorID, and
	// the people in a reactions set are AuthorIDs, never names.
	raw, err := e.stream.GetMsg(t.Context(), e.lastChange(m).Sequence-1)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get(headerAuthor) == "" {
		t.Fatalf("the moderator's delete event has no Chat-Author: %v", raw.Header)
	}
	var found bool
	for seq := m.Seq + 1; seq <= e.count(); seq++ {
		r := e.stored(seq)
		if strings.Contains(string(r.Data), `"reactions":{"👍":["`+annID+`"]}`) && r.Header.Get(headerAuthor) == annID {
			found = true
		}
		if strings.Contains(string(r.Data), `"name"`) || strings.Contains(string(r.Data), `"Ann"`) {
			t.Fatalf("seq %d names a person: %s", seq, r.Data)
		}
	}
	if !found {
		t.Fatal("no reactions event by ann's AuthorID with Chat-Author set")
	}

	// A message posted by a token without sub has no author: nobody but a moderator
	// may change it, not even that token (an empty AuthorID matches nothing).
	resp, body = e.postJSON("/rooms/general/messages", `{"message":"anonymous"}`, nameOnly...)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("post: %d %s", resp.StatusCode, body)
	}
	anon := decodeMessage(t, body)
	e.persist(anon.Seq)
	resp, body = e.do("PATCH", msgPath(anon), `{"message":"x"}`, nameOnly...)
	wantError(t, resp, body, http.StatusForbidden)
	if resp, body := e.do("DELETE", msgPath(anon), ``, mod...); resp.StatusCode != http.StatusOK {
		t.Fatalf("moderator deletes the anonymous message: %d %s", resp.StatusCode, body)
	}
}
