package topology_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/deploy/topology"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chatrt/chat/pkg/history"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	binDir   string
	buildErr error
	nginxErr error
)

// TestMain builds the binaries once per test binary run (seconds from the Go cache).
func TestMain(m *testing.M) {
	_, nginxErr = topology.NginxBinary()
	if nginxErr == nil {
		binDir, buildErr = os.MkdirTemp("", "chat-topology-bin-")
		if buildErr == nil {
			var root string
			if root, buildErr = topology.RepoRoot("."); buildErr == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				buildErr = topology.Build(ctx, root, binDir)
				cancel()
			}
		}
	}
	code := m.Run()
	printSummary()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// closeSpread is the pushers' CHAT_CLOSE_SPREAD in the test topology.
const closeSpread = 2 * time.Second

// startTopology starts the compose-shaped topology for a test, or skips without nginx
// (fails when CI is set).
func startTopology(t *testing.T) *env {
	t.Helper()
	if nginxErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs nginx for the topology tests: %v", nginxErr)
		}
		t.Skipf("%v (the test fails instead when CI is set)", nginxErr)
	}
	if buildErr != nil {
		t.Fatalf("build binaries: %v", buildErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	if os.Getenv("CHAT_TOPOLOGY_KEEP") != "" { // keep data and logs for a post-mortem
		var err error
		if dir, err = os.MkdirTemp("", "chat-topology-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("topology state kept in %s", dir)
	}
	start := time.Now()
	topo, err := topology.Start(ctx, topology.Options{
		BinDir:       binDir,
		Dir:          dir,
		APIEnv:       []string{"CHAT_RATE_LIMIT=0"},
		PersisterEnv: []string{"CHAT_ACK_WAIT=2s", "CHAT_RETRY_MIN=50ms", "CHAT_RETRY_MAX=500ms"},
		PusherEnv:    []string{"CHAT_CLOSE_SPREAD=" + closeSpread.String()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("topology started in %v behind %s", time.Since(start).Round(time.Millisecond), topo.URL)
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, topo)
		}
		if err := topo.Close(); err != nil {
			t.Errorf("close topology: %v", err)
		}
	})
	nc, err := nats.Connect(topo.NATSURL, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := history.Connect(ctx, topo.MongoURI)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mc.Disconnect(context.Background()) })
	return &env{topo: topo, js: js, store: history.New(mc)}
}

// dumpLogs logs the last lines of every member's log.
func dumpLogs(t *testing.T, topo *topology.Topology) {
	logs := map[string]string{}
	var names []string
	for _, p := range topo.All() {
		logs[p.Name] = p.LogPath
		names = append(names, p.Name)
	}
	// nginx writes its own error log (the rendered config's error_log).
	logs["nginx error.log"] = filepath.Join(topo.Dir(), "nginx", "error.log")
	names = append(names, "nginx error.log")
	for _, name := range names {
		f, err := os.Open(logs[name])
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
		lines = lines[max(0, len(lines)-15):]
		t.Logf("--- %s (%s), last %d lines:\n%s", name, logs[name], len(lines), strings.Join(lines, "\n"))
	}
}

// TestScaledTopology runs every fault scenario on one topology start, one after the
// other; each leaves the topology whole (the faulty member is started again).
func TestScaledTopology(t *testing.T) {
	e := startTopology(t)
	steps := []struct {
		name string
		run  func(*testing.T, *env)
	}{
		{"admin sees every node", adminSeesEveryNode},
		{"admin page in a browser: nodes, requeue", adminPageInBrowser},
		{"pusher kill", pusherKill},
		{"presence across pushers, pusher kill", presenceAcrossPushers},
		{"persister kill", persisterKill},
		{"api rolling restart", apiRollingRestart},
		{"pusher rolling deploy", pusherRollingDeploy},
		{"nats node kill", natsKill},
	}
	for _, s := range steps {
		if t.Run(s.name, func(t *testing.T) { s.run(t, e) }) {
			continue
		}
		// A failed scenario may leave its victim down: start it again so the next
		// scenarios test what they claim.
		for _, p := range e.topo.All() {
			if p.Running() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := p.Start(ctx)
			cancel()
			if err != nil {
				t.Fatalf("%s is down after %q and does not start: %v", p.Name, s.name, err)
			}
		}
	}
}

// pusherConns is a pusher's connection count from its /readyz.
func pusherConns(t *testing.T, p *topology.Process) int {
	t.Helper()
	status, body, err := get(p.URL() + "/readyz")
	var r struct{ Connections int }
	if err != nil || status != 200 || json.Unmarshal([]byte(body), &r) != nil {
		t.Fatalf("%s /readyz: %d %s %v", p.Name, status, body, err)
	}
	return r.Connections
}

// streamState is the CHAT stream as one NATS node holds it.
type streamState struct {
	msgs, last uint64
	leader     string // the stream leader as this node knows it
}

// nodeStream reads the CHAT stream state of one NATS node from its monitoring endpoint.
func nodeStream(p *topology.Process) (streamState, error) {
	status, body, err := get(p.Monitor + "/jsz?accounts=true&streams=true")
	if err != nil || status != 200 {
		return streamState{}, fmt.Errorf("%s /jsz: %d %v", p.Name, status, err)
	}
	var jsz struct {
		Accounts []struct {
			Streams []struct {
				Name    string `json:"name"`
				Cluster struct {
					Leader string `json:"leader"`
				} `json:"cluster"`
				State struct {
					Msgs    uint64 `json:"messages"`
					LastSeq uint64 `json:"last_seq"`
				} `json:"state"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.Unmarshal([]byte(body), &jsz); err != nil {
		return streamState{}, err
	}
	for _, a := range jsz.Accounts {
		for _, s := range a.Streams {
			if s.Name == chat.StreamName {
				return streamState{msgs: s.State.Msgs, last: s.State.LastSeq, leader: s.Cluster.Leader}, nil
			}
		}
	}
	return streamState{}, fmt.Errorf("%s holds no %s stream", p.Name, chat.StreamName)
}
