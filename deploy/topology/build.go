package topology

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Binaries the topology runs, built by Build into one directory.
const (
	BinNATS      = "nats-server"
	BinFerretDB  = "ferretdb"
	BinAPI       = "api"
	BinPersister = "persister"
	BinPusher    = "pusher"
)

// Build compiles every binary of the topology into binDir with one `go build` run in
// the repository's workspace (repoRoot holds go.work): nats-server from its Go module
// (the deploy module's pinned tool dependency, not a download), the FerretDB wrapper
// (deploy/cmd/ferretdb) and the three services. Unchanged sources build from the Go
// cache in seconds.
func Build(ctx context.Context, repoRoot, binDir string) error {
	if _, err := os.Stat(filepath.Join(repoRoot, "go.work")); err != nil {
		return fmt.Errorf("build: %s is not the repository root: %w", repoRoot, err)
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	abs, err := filepath.Abs(binDir)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	// With -o naming a directory, each main package lands there under its name
	// (nats-server for .../nats-server/v2).
	cmd := exec.CommandContext(ctx, "go", "build", "-o", abs+string(filepath.Separator),
		"github.com/nats-io/nats-server/v2",
		"./deploy/cmd/ferretdb",
		"./services/api", "./services/persister", "./services/pusher")
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	var missing []error
	for _, b := range []string{BinNATS, BinFerretDB, BinAPI, BinPersister, BinPusher} {
		if _, err := os.Stat(filepath.Join(abs, b)); err != nil {
			missing = append(missing, err)
		}
	}
	return errors.Join(missing...)
}

// RepoRoot finds the repository root (the directory holding go.work) from dir upwards.
func RepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.work in %s or above", dir)
		}
	}
}
