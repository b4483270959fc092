// Package chatjs turns the JavaScript client package's ES module (clients/js/src/chat.js, the
// one source of the client) into the classic script the UI serves as /chat.js, which defines
// window.ChatClient for plain pages. The api embeds only the generated copy (go:embed cannot
// reach outside the module); `go generate ./services/api/internal/web` (make chatjs) writes it
// and a test in package web fails when it is out of date.
package chatjs

import (
	"bytes"
	"fmt"
	"regexp"
)

// Source is the module's path from the repository root.
const Source = "clients/js/src/chat.js"

// Global is the name the script defines on window (the module's default export).
const Global = "ChatClient"

var (
	exportList    = regexp.MustCompile(`^export \{[A-Za-z0-9_$, ]*\};?$`)
	exportDefault = regexp.MustCompile(`^export default ` + Global + `;?$`)
	moduleSyntax  = regexp.MustCompile(`^(export|import)\b`)
)

// Script wraps module into an immediately invoked function that keeps its names private
// and assigns Global to globalThis. The module may use only top-level `export { ... };`
// lists and `export default ChatClient;` (they are dropped); any other export or an
// import is an error, as the script could not honour it.
func Script(module []byte) ([]byte, error) {
	var out bytes.Buffer
	out.WriteString("// Code generated from " + Source + " by services/api/internal/chatjs; DO NOT EDIT.\n")
	out.WriteString("// Edit the module and run `make chatjs`.\n")
	out.WriteString("(function () {\n'use strict';\n")
	hasDefault := false
	lines := bytes.SplitAfter(module, []byte("\n"))
	for i, line := range lines {
		text := string(bytes.TrimRight(line, "\r\n"))
		switch {
		case exportDefault.MatchString(text):
			hasDefault = true
			continue
		case exportList.MatchString(text):
			continue
		case moduleSyntax.MatchString(text):
			return nil, fmt.Errorf("%s:%d: only `export { ... };` and `export default %s;` can become a script: %q", Source, i+1, Global, text)
		}
		out.Write(line)
	}
	if !hasDefault {
		return nil, fmt.Errorf("%s: no `export default %s;`", Source, Global)
	}
	if !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		out.WriteByte('\n')
	}
	out.WriteString("globalThis." + Global + " = " + Global + ";\n})();\n")
	return out.Bytes(), nil
}
