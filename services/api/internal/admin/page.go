package admin

import (
	"io/fs"
	"net/http"
	"path"
)

// contentSecurityPolicy: the page's script and style only from this origin (no inline
// code), requests only to this origin.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var pageTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// pageHandler serves /admin (admin.html), /admin/admin.js and /admin/admin.css.
func pageHandler() http.Handler {
	files := map[string][]byte{}
	for _, name := range []string{"admin.html", "admin.js", "admin.css"} {
		b, err := fs.ReadFile(static, "static/"+name)
		if err != nil {
			panic(err) // embedded at build time
		}
		files[name] = b
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := path.Base(r.URL.Path)
		body, ok := files[name]
		if !ok {
			name, body = "admin.html", files["admin.html"]
		}
		h := w.Header()
		h.Set("Content-Type", pageTypes[path.Ext(name)])
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("Cache-Control", "no-cache")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})
}
