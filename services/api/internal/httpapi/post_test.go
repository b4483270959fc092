package httpapi

import (
	"testing"

	"github.com/chatrt/chat/pkg/chat"
)

// TestResolveRoom: the path's room wins and the body's must equal it; else the body's;
// else the default room.
func TestResolveRoom(t *testing.T) {
	room := func(s string) *chat.Room {
		r, err := chat.ResolveRoom(s)
		if err != nil {
			t.Fatal(err)
		}
		return &r
	}
	for _, c := range []struct {
		path       *chat.Room
		body, want string
		status     int
	}{
		{nil, "", "general", 0},
		{nil, "lobby", "lobby", 0},
		{nil, "a b", "", 400},
		{room("lobby"), "", "lobby", 0},
		{room("lobby"), "lobby", "lobby", 0},
		{room("lobby"), "other", "", 400},
		{room("general"), "", "general", 0},
		{room("general"), "general", "general", 0},
		{room("general"), "a b", "", 400},
	} {
		got, herr := resolveRoom(c.path, c.body)
		switch {
		case c.status != 0 && (herr == nil || herr.status != c.status):
			t.Errorf("resolveRoom(%v, %q) = %q, %v; want %d", c.path, c.body, got, herr, c.status)
		case c.status == 0 && (herr != nil || got.String() != c.want):
			t.Errorf("resolveRoom(%v, %q) = %q, %v; want %q", c.path, c.body, got, herr, c.want)
		}
	}
}
