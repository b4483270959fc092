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

// dockerStage is one FROM of a Dockerfile: its base (image or earlier stage), its name
// (AS ...) and its instructions after the FROM.
type dockerStage struct {
	from, name string
	ins        []dockerInstruction
}

// dockerStages splits a Dockerfile into its global ARGs (before the first FROM) and its
// stages.
func dockerStages(t *testing.T, ins []dockerInstruction) (globals []dockerInstruction, stages []dockerStage) {
	t.Helper()
	for _, in := range ins {
		if in.cmd == "FROM" {
			from, name, _ := strings.Cut(in.args, " AS ")
			stages = append(stages, dockerStage{from: strings.TrimSpace(from), name: strings.TrimSpace(name)})
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s before the first FROM", in.cmd)
			}
			globals = append(globals, in)
			continue
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
	}
	return globals, stages
}

func (s dockerStage) text() string {
	var b strings.Builder
	for _, in := range s.ins {
		b.WriteString(in.cmd + " " + in.args + "\n")
	}
	return b.String()
}

func (s dockerStage) has(cmd, args string) bool {
	return slices.ContainsFunc(s.ins, func(in dockerInstruction) bool { return in.cmd == cmd && in.args == args })
}

// dockerfileImages are the values of --build-arg SERVICE: the services and the all-in-one.
var dockerfileImages = []string{"api", "persister", "pusher", "chat"}

// TestDockerfile: one Dockerfile builds every image: a build stage (static binary), a
// distroless nonroot runtime, one image-<SERVICE> stage per service (the runtime as it is)
// and for the all-in-one (plus its data volume), and the final stage picked by SERVICE.
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	globals, stages := dockerStages(t, parseDockerfile(t, filepath.Join(root, "Dockerfile")))
	if !slices.ContainsFunc(globals, func(in dockerInstruction) bool { return in.args == "SERVICE=api" }) {
		t.Errorf("no global ARG SERVICE=api before the first FROM: %v", globals)
	}
	byName := map[string]dockerStage{}
	for _, s := range stages {
		byName[s.name] = s
	}
	build, final := byName["build"], byName["runtime"]
	if !regexp.MustCompile(`^golang:\S+$`).MatchString(build.from) {
		t.Fatalf("build stage FROM %q", build.from)
	}
	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") || !strings.Contains(final.from, "nonroot") {
		t.Errorf("runtime stage FROM %q, want distroless static nonroot", final.from)
	}
	for _, stage := range []dockerStage{build, final} {
		if !stage.has("ARG", "SERVICE") {
			t.Errorf("stage %q lacks ARG SERVICE (the global default)", stage.name)
		}
	}
	// The last stage is the image SERVICE names; each value has its stage, based on the
	// runtime; only the all-in-one's adds anything (its data volume).
	if last := stages[len(stages)-1]; last.from != "image-${SERVICE}" || len(last.ins) != 0 {
		t.Errorf("final stage FROM %q with %d instructions, want FROM image-${SERVICE} alone", last.from, len(last.ins))
	}
	for _, svc := range dockerfileImages {
		s, ok := byName["image-"+svc]
		switch {
		case !ok:
			t.Errorf("no stage image-%s", svc)
		case s.from != "runtime":
			t.Errorf("image-%s FROM %q, want runtime", svc, s.from)
		case svc != "chat" && len(s.ins) != 0:
			t.Errorf("image-%s adds %v to the runtime", svc, s.ins)
		}
	}
	chat := byName["image-chat"]
	for _, want := range [][2]string{
		{"COPY", "--from=build --chown=65532:65532 /out/data /data"},
		{"ENV", "CHAT_DATA_DIR=/data"},
		{"VOLUME", `["/data"]`},
	} {
		if !chat.has(want[0], want[1]) {
			t.Errorf("image-chat lacks %s %s: %v", want[0], want[1], chat.ins)
		}
	}
	buildText := build.text()
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, `"./services/${SERVICE}"`, "pkg=./cmd/chat",
		"./deploy/cmd/healthcheck", "api|persister|pusher|chat)", "mkdir -p /out/data"} {
		if !strings.Contains(buildText, want) {
			t.Errorf("build stage lacks %s", want)
		}
	}
	var user, entrypoint, healthcheck string
	for _, stage := range stages[1:] {
		for _, in := range stage.ins {
			switch in.cmd {
			case "USER":
				user = in.args
			case "ENTRYPOINT":
				entrypoint = in.args
			case "HEALTHCHECK":
				healthcheck = in.args
			case "RUN":
				t.Errorf("RUN in stage %q (distroless has no shell): %s", stage.name, in.args)
			}
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid != "65532" {
		t.Errorf("runtime USER %q, want non-root 65532 (the owner of /data)", user)
	}
	if !strings.HasPrefix(entrypoint, "[") {
		t.Errorf("ENTRYPOINT %q, want exec form", entrypoint)
	}
	if !strings.Contains(healthcheck, `"/usr/local/bin/healthcheck", "/readyz"`) {
		t.Errorf("HEALTHCHECK %q", healthcheck)
	}

	// Every COPY source exists and survives .dockerignore.
	ignore := parseDockerignore(t, filepath.Join(root, ".dockerignore"))
	for _, in := range build.ins {
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
		"harness/embedded/embedded.go":   false,
		"clients/go/client.go":           false,
		"cmd/chat/data/nats/x":           true,
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
