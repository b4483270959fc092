package chattest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// ferretBuild is the FerretDB binary, built once per test process.
var ferretBuild struct {
	once sync.Once
	path string
	err  error
}

// ferretBinary builds github.com/chatrt/chat/deploy/cmd/ferretdb without -race (whatever
// GOFLAGS says) from this repository's workspace and returns its path; a failed build
// fails the test with the compiler's output. The binary lives in the user cache directory
// under a name per workspace, so it is not left behind per test process and go build,
// finding it up to date, does not even relink it.
func ferretBinary(t testing.TB) string {
	t.Helper()
	ferretBuild.once.Do(func() { ferretBuild.path, ferretBuild.err = buildFerret() })
	if ferretBuild.err != nil {
		t.Fatalf("build ferretdb for the test: %v", ferretBuild.err)
	}
	return ferretBuild.path
}

func buildFerret() (string, error) {
	root, err := workspaceRoot()
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(cache, "chatrt-chattest", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build dir: %w", err)
	}
	bin := filepath.Join(dir, "ferretdb")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-race=false", "-buildvcs=false", "-o", bin,
		"github.com/chatrt/chat/deploy/cmd/ferretdb")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// workspaceRoot is the directory of the go.work above the test's working directory (the
// deploy module, which holds the ferretdb command, resolves only in the workspace).
func workspaceRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.work above %s", wd)
		}
	}
}

// tailBuffer keeps the last max bytes written to it: a child's stderr for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	if over := len(b.b) - b.max; over > 0 {
		b.b = append(b.b[:0], b.b[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}
