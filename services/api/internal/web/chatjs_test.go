package web

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/chatrt/chat/services/api/internal/chatjs"
)

// TestChatJSGenerated fails when static/chat.js is not the script generated from the
// JavaScript client's module: someone edited the copy, or the module without `make chatjs`.
func TestChatJSGenerated(t *testing.T) {
	module, err := os.ReadFile(filepath.Join("..", "..", "..", "..", filepath.FromSlash(chatjs.Source)))
	if err != nil {
		t.Fatalf("read the module (tests run in the repository): %v", err)
	}
	want, err := chatjs.Script(module)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("static", "chat.js"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("static/chat.js is not generated from %s: edit the module, then run `make chatjs`", chatjs.Source)
	}
}
