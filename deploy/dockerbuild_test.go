package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
)

// There is no Docker engine where the tests run. These tests do what `docker build`
// would do with the Dockerfile's build stage, without Docker: they assemble the build
// context (.dockerignore applied) holding only what the stage's COPY instructions copy,
// and run the stage's RUN scripts there with its ENV and the SERVICE build arg. Then
// they run the result as its image would.

// dockerBuild runs the Dockerfile's build stage for service in a fresh directory and
// returns the directory standing for /out (service, healthcheck, data).
func dockerBuild(t *testing.T, service string) (out string, err error) {
	t.Helper()
	root := repoRoot(t)
	_, stages := dockerStages(t, parseDockerfile(t, filepath.Join(root, "Dockerfile")))
	var build dockerStage
	for _, s := range stages {
		if s.name == "build" {
			build = s
		}
	}
	ignore := parseDockerignore(t, filepath.Join(root, ".dockerignore"))
	dir := t.TempDir()
	out = filepath.Join(dir, "out")
	work := dir // WORKDIR, until the stage sets one
	env := append(os.Environ(), "SERVICE="+service)
	for _, in := range build.ins {
		switch in.cmd {
		case "WORKDIR":
			work = filepath.Join(dir, in.args)
			if err := os.MkdirAll(work, 0o755); err != nil {
				t.Fatal(err)
			}
		case "ENV":
			env = append(env, strings.Fields(in.args)...) // KEY=value pairs without spaces in the values
		case "COPY":
			dockerCopy(t, root, work, ignore, strings.Fields(in.args))
		case "RUN":
			script := in.args
			for strings.HasPrefix(script, "--") { // --mount=...: the caches are the machine's own
				_, script, _ = strings.Cut(script, " ")
				script = strings.TrimSpace(script)
			}
			script = strings.ReplaceAll(script, "/out", out)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			cmd := exec.CommandContext(ctx, "sh", "-ec", script)
			cmd.Dir, cmd.Env = work, env
			output, err := cmd.CombinedOutput()
			cancel()
			if err != nil {
				return out, fmt.Errorf("RUN %s: %w\n%s", in.args, err, output)
			}
		}
	}
	return out, nil
}

// dockerCopy does `COPY src... dest` (sources relative to the context root, dest to the
// working directory): a directory's content lands in dest, a file in dest/ or at dest;
// what .dockerignore excludes is not in the context and so never copied.
func dockerCopy(t *testing.T, root, work string, ignore dockerignore, args []string) {
	t.Helper()
	srcs, dest := args[:len(args)-1], args[len(args)-1]
	for _, pattern := range srcs {
		matches, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, src := range matches {
			rel, _ := filepath.Rel(root, src)
			if ignore.excluded(filepath.ToSlash(rel)) {
				continue
			}
			target := filepath.Join(work, dest)
			fi, err := os.Stat(src)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.IsDir() && strings.HasSuffix(dest, "/") {
				target = filepath.Join(target, filepath.Base(src))
			}
			err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(root, p)
				if ignore.excluded(filepath.ToSlash(rel)) {
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
				sub, _ := filepath.Rel(src, p)
				to := filepath.Join(target, sub)
				if d.IsDir() {
					return os.MkdirAll(to, 0o755)
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
					return err
				}
				return os.WriteFile(to, b, 0o644)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestDockerBuildStage: the build stage refuses an unknown SERVICE and builds each
// service's binary and the healthcheck from the build context alone (a workspace module
// missing from the context fails here), statically linked.
func TestDockerBuildStage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries: not with -short")
	}
	if _, err := dockerBuild(t, "mailer"); err == nil || !strings.Contains(err.Error(), "SERVICE must be api, persister, pusher or chat, got 'mailer'") {
		t.Errorf("SERVICE=mailer: %v", err)
	}
	for _, service := range []string{"api", "persister", "pusher"} {
		out, err := dockerBuild(t, service)
		if err != nil {
			t.Fatal(err)
		}
		version, err := exec.Command(filepath.Join(out, "service"), "-version").Output()
		if err != nil || !strings.HasPrefix(string(version), service+" ") {
			t.Errorf("%s image's binary -version: %q (%v)", service, version, err)
		}
		if _, err := os.Stat(filepath.Join(out, "healthcheck")); err != nil {
			t.Error(err)
		}
	}
}

// TestDockerAllInOneImage: --build-arg SERVICE=chat builds the all-in-one, which runs as
// image-chat would (its environment, the data directory /data as a volume, the
// HEALTHCHECK's probe), keeps what was posted across a stop and a start in that volume,
// and leaves nothing outside it.
func TestDockerAllInOneImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the all-in-one: not with -short")
	}
	out, err := dockerBuild(t, "chat")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(out, "data")); err != nil || !fi.IsDir() {
		t.Fatalf("the build stage made no data directory for /data: %v", err)
	}
	version, err := exec.Command(filepath.Join(out, "service"), "-version").Output()
	if err != nil || !strings.HasPrefix(string(version), "chat ") {
		t.Fatalf("-version: %q (%v)", version, err)
	}

	// The image's environment: the runtime's and image-chat's ENV, with the volume where
	// CHAT_DATA_DIR points. On this machine the ports are free loopback ones instead of
	// the container's :8080 and its loopback NATS and MongoDB ports.
	_, stages := dockerStages(t, parseDockerfile(t, filepath.Join(repoRoot(t), "Dockerfile")))
	imageEnv := map[string]string{}
	var volume string
	for _, s := range stages {
		if s.name != "runtime" && s.name != "image-chat" {
			continue
		}
		for _, in := range s.ins {
			switch in.cmd {
			case "ENV":
				for _, kv := range strings.Fields(in.args) {
					k, v, _ := strings.Cut(kv, "=")
					imageEnv[k] = v
				}
			case "VOLUME":
				var paths []string
				if err := json.Unmarshal([]byte(in.args), &paths); err != nil || len(paths) != 1 {
					t.Fatalf("VOLUME %s: want one path in JSON form", in.args)
				}
				volume = paths[0]
			}
		}
	}
	if volume == "" || imageEnv["CHAT_DATA_DIR"] != volume {
		t.Fatalf("CHAT_DATA_DIR=%q, VOLUME %q: the data must be in the volume", imageEnv["CHAT_DATA_DIR"], volume)
	}
	mount := t.TempDir() // the volume
	cwd := t.TempDir()   // the container's working directory: nothing may land there
	httpAddr := chattest.FreeAddr(t)
	env := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range imageEnv {
		env = append(env, k+"="+v)
	}
	env = append(env, "CHAT_DATA_DIR="+mount, "CHAT_HTTP_ADDR="+httpAddr,
		"CHAT_EMBEDDED_NATS_ADDR="+chattest.FreeAddr(t), "CHAT_EMBEDDED_MONGO_ADDR="+chattest.FreeAddr(t))

	start := func() *exec.Cmd {
		t.Helper()
		cmd := exec.Command(filepath.Join(out, "service"))
		cmd.Dir, cmd.Env = cwd, env
		logf, err := os.Create(filepath.Join(t.TempDir(), "chat.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		// Ready when the image's HEALTHCHECK command says so.
		deadline := time.Now().Add(90 * time.Second)
		for {
			probe := exec.Command(filepath.Join(out, "healthcheck"), "/readyz")
			probe.Env = env
			if probe.Run() == nil {
				return cmd
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(logf.Name())
				t.Fatalf("not healthy within 90s; log:\n%s", b)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	stop := func(cmd *exec.Cmd) {
		t.Helper()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("stopped with %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("did not stop within 60s of SIGTERM")
		}
	}

	base := "http://" + httpAddr
	waitStored := func(when string) {
		t.Helper()
		var body []byte
		chattest.EventuallyEvery(t, 10*time.Second, 100*time.Millisecond, func() bool {
			resp, err := http.Get(base + "/rooms/volume/messages")
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			return strings.Contains(string(body), `"message":"kept in /data"`)
		}, "%s, history is %v", when, chattest.Later(func() string { return string(body) }))
	}
	cmd := start()
	resp, err := http.Post(base+"/rooms/volume/messages", "application/json", strings.NewReader(`{"name":"ann","message":"kept in /data"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("post: %s", resp.Status)
	}
	// Acknowledged means in the stream (in nats/); the store has it once history serves
	// it. Stopping before that leaves it to the next start (a write that the shutdown cut
	// short is rolled back, and FerretDB removes a database file it could not finish
	// creating), so the store's files are looked for only then.
	waitStored("after the post")
	stop(cmd)
	for _, sub := range []string{"nats", "mongo"} {
		if entries, err := os.ReadDir(filepath.Join(mount, sub)); err != nil || len(entries) == 0 {
			t.Errorf("nothing in the volume's %s/ (%v)", sub, err)
		}
	}
	if entries, _ := os.ReadDir(cwd); len(entries) != 0 {
		t.Errorf("the all-in-one wrote outside the volume: %v", entries)
	}

	cmd = start()
	defer stop(cmd)
	waitStored("after a restart on the same volume")
}
