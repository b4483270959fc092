package deploy

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite deploy/nginx/nginx.conf from the template")

// TestComposeNginxConfUpToDate keeps the committed copy mounted by docker-compose.yml
// identical to the template rendered with the compose parameters.
func TestComposeNginxConfUpToDate(t *testing.T) {
	want, err := RenderNginx(ComposeNginxParams())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("nginx", "nginx.conf")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from RenderNginx(ComposeNginxParams()); regenerate with\n\tgo test ./deploy -run TestComposeNginxConfUpToDate -update", path)
	}
}

func TestRenderNginxRejectsBadParams(t *testing.T) {
	good := LoopbackNginxParams(18080, []int{18081}, []int{18082}, "/tmp/x")
	cases := map[string]func(p *NginxParams){
		"no api":              func(p *NginxParams) { p.API = nil },
		"no pushers":          func(p *NginxParams) { p.Pushers = []string{} },
		"empty listen":        func(p *NginxParams) { p.Listen = "" },
		"injection in server": func(p *NginxParams) { p.API = []string{"127.0.0.1:1; } server { listen 81"} },
		"server without port": func(p *NginxParams) { p.Pushers = []string{"127.0.0.1"} },
		"relative state dir":  func(p *NginxParams) { p.StateDir = "state" },
		"space in resolver":   func(p *NginxParams) { p.Resolver = "127.0.0.11 valid=1s" },
	}
	for name, mutate := range cases {
		p := good
		mutate(&p)
		if out, err := RenderNginx(p); err == nil {
			t.Errorf("%s: no error; rendered:\n%s", name, out)
		}
	}
	if _, err := RenderNginx(good); err != nil {
		t.Errorf("good params: %v", err)
	}
}

// TestNginxConfigShape checks what nginx -t cannot: the routing rules both renders
// share and the compose-only dynamic resolution.
func TestNginxConfigShape(t *testing.T) {
	loop, err := RenderNginx(LoopbackNginxParams(18080, []int{18081, 18082}, []int{18083, 18084, 18085}, "/tmp/nginx-state"))
	if err != nil {
		t.Fatal(err)
	}
	compose, err := RenderNginx(ComposeNginxParams())
	if err != nil {
		t.Fatal(err)
	}
	for name, conf := range map[string]string{"loopback": string(loop), "compose": string(compose)} {
		for _, want := range []string{
			"location = /ws {", "proxy_pass http://chat_pusher;",
			"location / {", "proxy_pass http://chat_api;",
			"proxy_http_version 1.1;",
			"proxy_set_header Upgrade $http_upgrade;",
			"proxy_set_header Connection $connection_upgrade;",
			"proxy_read_timeout 1h;",
			"least_conn;",
		} {
			if !strings.Contains(conf, want) {
				t.Errorf("%s: lacks %q", name, want)
			}
		}
		directives := regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(conf, "")
		for _, banned := range []string{"ip_hash", "hash ", "sticky"} {
			if strings.Contains(directives, banned) {
				t.Errorf("%s: contains %q: no sticky sessions", name, banned)
			}
		}
		// proxy_set_header is not inherited into a location that sets its own.
		locations := regexp.MustCompile(`(?s)location ([^{]*) \{.*?\n        \}`).FindAllStringSubmatch(conf, -1)
		var proxied, refused []string
		for _, loc := range locations {
			switch {
			case strings.Contains(loc[0], "proxy_pass"):
				proxied = append(proxied, loc[1])
				if !strings.Contains(loc[0], "proxy_set_header X-Forwarded-For $remote_addr;") {
					t.Errorf("%s: location without X-Forwarded-For:\n%s", name, loc[0])
				}
			case strings.Contains(loc[0], "return 404 "):
				refused = append(refused, loc[1])
			default:
				t.Errorf("%s: location neither proxies nor refuses:\n%s", name, loc[0])
			}
		}
		if !slices.Equal(proxied, []string{"= /ws", "/"}) {
			t.Errorf("%s: proxied locations %q, want /ws and /", name, proxied)
		}
		// Prometheus and the health checks reach the services directly, never the edge.
		if !slices.Equal(refused, []string{"= /metrics", "= /readyz"}) {
			t.Errorf("%s: locations answering 404 %q, want exactly /metrics and /readyz", name, refused)
		}
	}
	if !strings.Contains(string(loop), "server 127.0.0.1:18085 max_fails") || strings.Contains(string(loop), "resolve") {
		t.Error("loopback: want fixed IP upstreams and no DNS resolution")
	}
	if !strings.Contains(string(compose), "resolver 127.0.0.11") || !strings.Contains(string(compose), "server pusher:8080 resolve") {
		t.Error("compose: want service names re-resolved through Docker's DNS")
	}
}

// nginxBinary returns the nginx executable, skipping (or failing under CI) without it.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	if os.Getenv("CI") != "" {
		t.Fatal("nginx not installed (CI is set): apt-get install -y nginx")
	}
	t.Skip("nginx not installed: apt-get install -y nginx to run this test (it fails instead when CI is set)")
	return ""
}

// writeLoopbackConf renders the loopback configuration into a fresh state directory.
func writeLoopbackConf(t *testing.T, listen int, api, pushers []int) (dir, conf string) {
	t.Helper()
	dir = t.TempDir()
	b, err := RenderNginx(LoopbackNginxParams(listen, api, pushers, dir))
	if err != nil {
		t.Fatal(err)
	}
	conf = filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, conf
}

func TestNginxConfigTest(t *testing.T) {
	bin := nginxBinary(t)
	dir, conf := writeLoopbackConf(t, 18080, []int{18081, 18082}, []int{18083, 18084, 18085})
	out, err := exec.Command(bin, "-t", "-c", conf, "-p", dir, "-e", "stderr").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "test is successful") {
		t.Fatalf("nginx -t output:\n%s", out)
	}
}

// Tokens may travel in ?access_token= (websocket auth for browsers): access logs must not
// contain query strings.
func TestNginxLogsNoQueryStrings(t *testing.T) {
	for name, params := range map[string]NginxParams{
		"loopback": LoopbackNginxParams(18080, []int{18081}, []int{18083}, "/tmp/nginx-state"),
		"compose":  ComposeNginxParams(),
	} {
		conf, err := RenderNginx(params)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(conf), "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "access_log") && !strings.HasSuffix(line, " chat;") {
				t.Errorf("%s: %q does not use the query-free log format", name, line)
			}
			if strings.Contains(line, "$request ") || strings.Contains(line, "$request_uri") || strings.Contains(line, "$args") {
				t.Errorf("%s: %q logs the query string", name, line)
			}
		}
	}
}
