package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Path:      "github.com/chatrt/chat/services/api",
		Main:      debug.Module{Path: "github.com/chatrt/chat/services/api", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "-trimpath", Value: "true"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "d0c4dbcd53904511ba70dd3225c07e5995ea9a53"},
			{Key: "vcs.time", Value: "2026-12-04T03:05:06Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	i := FromBuildInfo(bi)
	want := Info{Path: bi.Path, Version: "(devel)", Revision: "d0c4dbcd53904511ba70dd3225c07e5995ea9a53", Dirty: true,
		Time: time.Date(2026, 12, 4, 3, 5, 6, 0, time.UTC), GoVersion: "go1.26.8"}
	if i != want {
		t.Fatalf("FromBuildInfo = %+v, want %+v", i, want)
	}
	if got := i.Commit(); got != "d0c4dbcd53904511ba70dd3225c07e5995ea9a53+dirty" {
		t.Errorf("Commit = %q", got)
	}
	line := "api (devel) commit d0c4dbcd53904511ba70dd3225c07e5995ea9a53+dirty (2026-12-04T03:05:06Z) go1.26.8 " +
		runtime.GOOS + "/" + runtime.GOARCH
	if got := i.String("api"); got != line {
		t.Errorf("String =\n%q, want\n%q", got, line)
	}
	l := i.Labels("api")
	if len(l) != 3 || l["service"] != "api" || l["version"] != "(devel)" || l["commit"] != i.Commit() {
		t.Errorf("Labels = %v", l)
	}

	i.Dirty = false
	if got := i.Commit(); got != "d0c4dbcd53904511ba70dd3225c07e5995ea9a53" {
		t.Errorf("clean Commit = %q", got)
	}
}

// TestNothingRecorded: a build without VCS information (go run, a worktree, a container
// context) and without a main module version says so rather than making anything up.
func TestNothingRecorded(t *testing.T) {
	i := FromBuildInfo(&debug.BuildInfo{Path: "github.com/chatrt/chat/cmd/chat"})
	if i.Version != "(devel)" || i.Commit() != "" || !i.Time.IsZero() || i.GoVersion != runtime.Version() {
		t.Fatalf("FromBuildInfo = %+v", i)
	}
	if got := i.String("chat"); !strings.HasPrefix(got, "chat (devel) commit unknown go") {
		t.Errorf("String = %q", got)
	}
	if l := i.Labels("chat"); l["commit"] != "" || l["version"] != "(devel)" {
		t.Errorf("Labels = %v", l)
	}
	// A release built as a dependency (go install module@v1.2.3) keeps its version.
	i = FromBuildInfo(&debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{{Key: "vcs.time", Value: "bad"}}})
	if i.Version != "v1.2.3" || !i.Time.IsZero() {
		t.Errorf("FromBuildInfo = %+v", i)
	}
}

// TestRead: the test binary's own build information is readable and stable.
func TestRead(t *testing.T) {
	a, b := Read(), Read()
	if a != b || a.Version == "" || a.GoVersion != runtime.Version() {
		t.Fatalf("Read = %+v then %+v", a, b)
	}
}
