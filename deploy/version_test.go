package deploy

import (
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestEveryBinaryPrintsItsBuild builds every main package of the repository with `go
// build` (as a person or CI would) and runs each with -version: it must print the
// module version and the commit the tree is at (+dirty with uncommitted changes), from
// what the toolchain recorded, and exit 0 without reading its configuration (an invalid
// CHAT_* value is set).
//
// The go command records the commit only in a git clone whose .git is a directory (CI's
// fresh clone, a developer's checkout); in a git worktree (.git is a file) or a tree
// without git it records none, and the binaries must then say "commit unknown".
func TestEveryBinaryPrintsItsBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary: not with -short")
	}
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	list := exec.CommandContext(ctx, "go", "list", "-f", `{{if eq .Name "main"}}{{.ImportPath}}{{end}}`, "github.com/chatrt/chat/...")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	mains := strings.Fields(string(out))
	if len(mains) < 9 {
		t.Fatalf("main packages: %v, want the services, cmd/* and deploy/cmd/*", mains)
	}

	commit := expectedCommit(t, root)
	bin := t.TempDir()
	// -buildvcs=true whatever GOFLAGS says (a machine may turn it off).
	build := exec.CommandContext(ctx, "go", append([]string{"build", "-buildvcs=true", "-o", bin + string(filepath.Separator)}, mains...)...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	accept := regexp.QuoteMeta(commit)
	if after := expectedCommit(t, root); after != commit {
		// Another test wrote into the tree meanwhile: either state is right.
		accept = "(" + accept + "|" + regexp.QuoteMeta(after) + ")"
	}
	t.Logf("expecting commit %s", commit)
	for _, m := range mains {
		name := path.Base(m)
		want := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + ` \(devel\) commit ` + accept +
			`( \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\))? go\S+ \S+/\S+\n$`)
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), "-version")
		cmd.Env = append(os.Environ(), "CHAT_SHUTDOWN_TIMEOUT=not-a-duration", "CHAT_HTTP_ADDR=invalid")
		got, err := cmd.Output()
		if err != nil {
			t.Errorf("%s -version: %v (%s)", name, err, got)
			continue
		}
		if !want.Match(got) {
			t.Errorf("%s -version printed %q, want %s", name, got, want)
		}
	}
}

// expectedCommit is what the go command records as the tree's commit: HEAD's hash, with
// "+dirty" when `git status --porcelain` lists anything; "unknown" when it records none
// (no git, or .git is not a directory).
func expectedCommit(t *testing.T, root string) string {
	t.Helper()
	if fi, err := os.Stat(filepath.Join(root, ".git")); err != nil || !fi.IsDir() {
		return "unknown"
	}
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD in a checkout: %v", err)
	}
	commit := strings.TrimSpace(string(head))
	status, err := exec.Command("git", "-C", root, "status", "--porcelain").Output()
	if err != nil {
		t.Fatalf("git status: %v", err)
	}
	if len(strings.TrimSpace(string(status))) > 0 {
		commit += "+dirty"
	}
	return commit
}
