package deploy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

//go:embed nginx/nginx.conf.tmpl
var nginxTemplateText string

var nginxTemplate = template.Must(template.New("nginx.conf").Option("missingkey=error").Parse(nginxTemplateText))

// NginxParams are the values substituted into deploy/nginx/nginx.conf.tmpl.
type NginxParams struct {
	// Listen is the argument of the listen directive: "8080" or "127.0.0.1:18080".
	Listen string
	// API and Pushers are the upstream servers, host:port each. Use IP addresses
	// unless Resolver is set: without it nginx resolves names once, at start.
	API     []string
	Pushers []string
	// Resolver, if set, is the DNS server nginx re-resolves the upstream names with
	// (compose: Docker's 127.0.0.11), so scaled or restarted replicas are found.
	// It needs nginx >= 1.27.3 (upstream "resolve").
	Resolver string
	// User is the worker user when the master runs as root; empty: nginx's default.
	User string
	// StateDir, an absolute directory, receives the pid file, logs and temp files
	// (loopback topologies run nginx unprivileged). Empty: pid in /var/run, logs to
	// stdout/stderr, temp files in the compiled-in defaults (container images).
	StateDir string
}

// ComposeNginxParams are the parameters of deploy/nginx/nginx.conf, the copy
// docker-compose.yml mounts into the nginx container.
func ComposeNginxParams() NginxParams {
	return NginxParams{
		Listen:   "8080",
		API:      []string{"api:8080"},
		Pushers:  []string{"pusher:8080"},
		Resolver: "127.0.0.11",
		User:     "nginx",
	}
}

// LoopbackNginxParams are parameters for nginx on loopback in front of services on
// 127.0.0.1 ports, keeping its state in stateDir (absolute, existing). Run it with
//
//	nginx -p <stateDir> -c <stateDir>/nginx.conf -e stderr -g 'daemon off;'
//
// Started as root, nginx would run its workers as "nobody", who cannot enter a
// private stateDir, so then the workers stay root (user root): a test topology only.
func LoopbackNginxParams(listenPort int, apiPorts, pusherPorts []int, stateDir string) NginxParams {
	addrs := func(ports []int) []string {
		out := make([]string, len(ports))
		for i, p := range ports {
			out[i] = fmt.Sprintf("127.0.0.1:%d", p)
		}
		return out
	}
	p := NginxParams{
		Listen:   fmt.Sprintf("127.0.0.1:%d", listenPort),
		API:      addrs(apiPorts),
		Pushers:  addrs(pusherPorts),
		StateDir: stateDir,
	}
	if os.Geteuid() == 0 {
		p.User = "root"
	}
	return p
}

// RenderNginx renders the nginx configuration for p.
func RenderNginx(p NginxParams) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("nginx params: %w", err)
	}
	var buf bytes.Buffer
	if err := nginxTemplate.Execute(&buf, p); err != nil {
		return nil, fmt.Errorf("render nginx.conf: %w", err)
	}
	return buf.Bytes(), nil
}

func (p NginxParams) validate() error {
	var errs []error
	word := func(field, v string, required bool) {
		switch {
		case v == "" && required:
			errs = append(errs, fmt.Errorf("%s is empty", field))
		case strings.ContainsAny(v, " \t\r\n;{}#'\"$\\"):
			errs = append(errs, fmt.Errorf("%s %q: contains whitespace or nginx syntax", field, v))
		}
	}
	word("Listen", p.Listen, true)
	word("Resolver", p.Resolver, false)
	word("User", p.User, false)
	word("StateDir", p.StateDir, false)
	if p.StateDir != "" && !filepath.IsAbs(p.StateDir) {
		errs = append(errs, fmt.Errorf("StateDir %q is not absolute", p.StateDir))
	}
	for _, up := range []struct {
		field   string
		servers []string
	}{{"API", p.API}, {"Pushers", p.Pushers}} {
		field, servers := up.field, up.servers
		if len(servers) == 0 {
			errs = append(errs, fmt.Errorf("%s: no upstream servers", field))
		}
		for _, s := range servers {
			word(field, s, true)
			if !strings.Contains(s, ":") {
				errs = append(errs, fmt.Errorf("%s %q: want host:port", field, s))
			}
		}
	}
	return errors.Join(errs...)
}
