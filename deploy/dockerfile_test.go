package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dockerInstruction is one Dockerfile instruction with continuation lines joined.
type dockerInstruction struct {
	cmd  string // upper case
	args string
}

func parseDockerfile(t *testing.T, path string) []dockerInstruction {
	t.Helper()
	var out []dockerInstruction
	var cur strings.Builder
	for _, line := range strings.Split(readFile(t, path), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: dangling line continuation", path)
	}
	return out
}

func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	ins := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	var stages [][]dockerInstruction // instructions per FROM
	for _, in := range ins {
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s before the first FROM", in.cmd)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) != 2 {
		t.Fatalf("%d stages, want 2 (build, runtime)", len(stages))
	}
	build, final := stages[0], stages[1]
	if !regexp.MustCompile(`^golang:\S+ AS build$`).MatchString(build[0].args) {
		t.Errorf("build stage FROM %q", build[0].args)
	}
	if !strings.HasPrefix(final[0].args, "gcr.io/distroless/static") || !strings.Contains(final[0].args, "nonroot") {
		t.Errorf("runtime stage FROM %q, want distroless static nonroot", final[0].args)
	}
	for _, stage := range stages {
		if !slices.ContainsFunc(stage, func(in dockerInstruction) bool { return in.cmd == "ARG" && in.args == "SERVICE=api" }) {
			t.Errorf("stage %q lacks ARG SERVICE=api", stage[0].args)
		}
	}
	var buildText strings.Builder
	for _, in := range build {
		buildText.WriteString(in.cmd + " " + in.args + "\n")
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, `"./services/${SERVICE}"`, "./deploy/cmd/healthcheck"} {
		if !strings.Contains(buildText.String(), want) {
			t.Errorf("build stage lacks %s", want)
		}
	}
	var user, entrypoint, healthcheck string
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "HEALTHCHECK":
			healthcheck = in.args
		case "RUN":
			t.Errorf("RUN in the runtime stage (distroless has no shell): %s", in.args)
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("runtime USER %q, want non-root", user)
	}
	if !strings.HasPrefix(entrypoint, "[") {
		t.Errorf("ENTRYPOINT %q, want exec form", entrypoint)
	}
	if !strings.Contains(healthcheck, `"/usr/local/bin/healthcheck", "/readyz"`) {
		t.Errorf("HEALTHCHECK %q", healthcheck)
	}

	// Every COPY source exists and survives .dockerignore.
	ignore := parseDockerignore(t, filepath.Join(root, ".dockerignore"))
	for _, in := range build {
		if in.cmd != "COPY" || strings.HasPrefix(in.args, "--from") {
			continue
		}
		fields := strings.Fields(in.args)
		for _, src := range fields[:len(fields)-1] {
			matches, err := filepath.Glob(filepath.Join(root, src))
			if err != nil {
				t.Fatal(err)
			}
			if len(matches) == 0 && !strings.ContainsAny(src, "*?[") {
				t.Errorf("COPY source %s does not exist", src)
			}
			if ignore.excluded(strings.TrimSuffix(src, "*")) && !strings.ContainsAny(src, "*?[") {
				t.Errorf("COPY source %s is excluded by .dockerignore", src)
			}
		}
	}
}

// dockerignore applies .dockerignore the way Docker does for the paths used here:
// a path is excluded when the last pattern matching it or one of its parents is not
// an exception (!pattern); "**/" matches any number of directories.
type dockerignore []string

func parseDockerignore(t *testing.T, path string) dockerignore {
	t.Helper()
	var d dockerignore
	for _, line := range strings.Split(readFile(t, path), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			d = append(d, line)
		}
	}
	return d
}

func (d dockerignore) excluded(path string) bool {
	excluded := false
	for _, p := range d {
		neg := strings.HasPrefix(p, "!")
		pat := strings.TrimSuffix(strings.TrimPrefix(p, "!"), "/")
		if matchOrParent(pat, path) {
			excluded = !neg
		}
	}
	return excluded
}

func matchOrParent(pattern, path string) bool {
	parts := strings.Split(path, "/")
	for i := len(parts); i > 0; i-- {
		candidate := strings.Join(parts[:i], "/")
		if ok, _ := filepath.Match(pattern, candidate); ok {
			return true
		}
		if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
			for j := 0; j < i; j++ {
				if ok, _ := filepath.Match(rest, strings.Join(parts[j:i], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}

func TestDockerignore(t *testing.T) {
	d := parseDockerignore(t, filepath.Join(repoRoot(t), ".dockerignore"))
	for path, want := range map[string]bool{
		"go.work":                        false,
		"pkg/chat/message.go":            false,
		"services/api/main.go":           false,
		"services/api/internal/web/x.js": false,
		"cmd/chat/main.go":               false,
		"deploy/go.mod":                  false,
		"deploy/cmd/healthcheck/main.go": false,
		".git/HEAD":                      true,
		"data/chat.sqlite":               true,
		"deploy/k8s/api.yaml":            true,
		"deploy/nginx/nginx.conf":        true,
		"pkg/chat/message_test.go":       true,
		"docker-compose.yml":             true,
	} {
		if got := d.excluded(path); got != want {
			t.Errorf("excluded(%s) = %v, want %v", path, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(repoRoot(t), "deploy", "cmd", "healthcheck", "main.go")); err != nil {
		t.Error(err)
	}
}
