package chatjs

import (
	"strings"
	"testing"
)

func TestScriptWrapsTheModule(t *testing.T) {
	module := "const x = 1;\nclass ChatClient {}\nexport { ChatClient, x };\nexport default ChatClient;\n"
	got, err := Script([]byte(module))
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	for _, want := range []string{"(function () {\n'use strict';\nconst x = 1;\nclass ChatClient {}\n", "globalThis.ChatClient = ChatClient;\n})();\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "export") {
		t.Errorf("script still exports:\n%s", s)
	}
}

func TestScriptRefusesWhatAScriptCannotDo(t *testing.T) {
	for name, module := range map[string]string{
		"import":          "import x from 'y';\nexport default ChatClient;\n",
		"export function": "export function f() {}\nexport default ChatClient;\n",
		"export const":    "export const a = 1;\nexport default ChatClient;\n",
		"other default":   "export default Other;\n",
		"no default":      "class ChatClient {}\nexport { ChatClient };\n",
	} {
		if _, err := Script([]byte(module)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
