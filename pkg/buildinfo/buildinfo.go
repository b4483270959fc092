// Package buildinfo tells which build a binary is, from what the Go toolchain recorded in
// it (runtime/debug.ReadBuildInfo): the main module's version, the VCS commit it was
// built from (and whether the working tree had uncommitted changes) and that commit's
// time. Nothing is maintained by hand or injected with -ldflags.
//
// Every binary of the repository prints it with -version; the services also expose it as
// the metric chat_build_info{service,version,commit} = 1 (MetricName, Labels) and in the
// body of GET /healthz.
//
// What the toolchain records depends on how the binary was built: `go build` and
// `go install` in a git clone record the commit (vcs.revision, vcs.time, vcs.modified);
// `go run`, `go test`, a git worktree (its .git is a file, which the go command does not
// recognise) and a source tree without .git (a container build context) record none, and
// the commit is then "" (printed as "unknown"). The module version is a release tag's
// version only when the binary is built as a dependency (`go install module@version`);
// built inside the repository it is "(devel)".
//
// Go records no build time (builds are reproducible): Time is the commit's time.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// MetricName is the gauge every service exposes with value 1 and the Labels of its build.
const MetricName = "chat_build_info"

// MetricHelp is MetricName's help text.
const MetricHelp = "The build of the serving binary: module version and VCS commit (+dirty: uncommitted changes); always 1."

// Info is what the toolchain recorded about the running binary's build.
type Info struct {
	Path      string    // the main package's import path, e.g. github.com/chatrt/chat/services/api
	Version   string    // the main module's version; "(devel)" when built inside the repository
	Revision  string    // the VCS commit (full hash); "" when not recorded
	Dirty     bool      // the working tree had uncommitted changes at build time
	Time      time.Time // the commit's time (Go records no build time); zero when not recorded
	GoVersion string    // the toolchain, e.g. go1.26.8
}

// devel is the version of a main module built from its own source tree.
const devel = "(devel)"

var (
	once sync.Once
	info Info
)

// Read returns the running binary's build information (read once).
func Read() Info {
	once.Do(func() {
		bi, ok := debug.ReadBuildInfo()
		if !ok {
			info = Info{Version: devel, GoVersion: runtime.Version()}
			return
		}
		info = FromBuildInfo(bi)
	})
	return info
}

// FromBuildInfo extracts an Info from bi (what runtime/debug.ReadBuildInfo returns).
func FromBuildInfo(bi *debug.BuildInfo) Info {
	i := Info{Path: bi.Path, Version: bi.Main.Version, GoVersion: bi.GoVersion}
	if i.Version == "" {
		i.Version = devel
	}
	if i.GoVersion == "" {
		i.GoVersion = runtime.Version()
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.modified":
			i.Dirty = s.Value == "true"
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339Nano, s.Value); err == nil {
				i.Time = t.UTC()
			}
		}
	}
	return i
}

// Commit is the revision with "+dirty" appended when the tree had uncommitted changes,
// or "" when no revision was recorded.
func (i Info) Commit() string {
	if i.Revision == "" {
		return ""
	}
	if i.Dirty {
		return i.Revision + "+dirty"
	}
	return i.Revision
}

// String is the line -version prints for the binary called name:
//
//	api (devel) commit d0c4dbcd53904511ba70dd3225c07e5995ea9a53+dirty (2026-12-04T03:05:06Z) go1.26.8 linux/amd64
//
// with "commit unknown" when no commit was recorded.
func (i Info) String(name string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(" " + i.Version)
	if c := i.Commit(); c != "" {
		b.WriteString(" commit " + c)
		if !i.Time.IsZero() {
			b.WriteString(" (" + i.Time.Format(time.RFC3339) + ")")
		}
	} else {
		b.WriteString(" commit unknown")
	}
	b.WriteString(" " + i.GoVersion + " " + runtime.GOOS + "/" + runtime.GOARCH)
	return b.String()
}

// Labels are the labels of MetricName for service (a map[string]string, which
// prometheus.Labels accepts): service, version and commit ("" when unknown).
func (i Info) Labels(service string) map[string]string {
	return map[string]string{"service": service, "version": i.Version, "commit": i.Commit()}
}
