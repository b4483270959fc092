package topology_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/chatrt/chat/pkg/ops"
)

// adminSeesEveryNode: every service process of the topology (2 apis, 2 persisters, 3
// pushers) answers one chat.ops.stats request, each with its own address and ready; the
// admin page's stats through nginx (auth off: nginx is the api's loopback peer) list the
// same seven nodes and the three NATS servers holding the stream: with nginx, the
// eleven processes an operator sees (FerretDB has no stats).
func adminSeesEveryNode(t *testing.T, e *env) {
	want := map[string]string{} // addr -> service
	for _, p := range e.topo.APIs {
		want[p.Addr] = "api"
	}
	for _, p := range e.topo.Persisters {
		want[p.Addr] = "persister"
	}
	for _, p := range e.topo.Pushers {
		want[p.Addr] = "pusher"
	}
	nodes, bad, err := ops.Gather(t.Context(), e.js.Conn(), 2*time.Second)
	if err != nil || bad != 0 {
		t.Fatalf("gather: %v, %d bad answers", err, bad)
	}
	got := map[string]string{}
	for _, n := range nodes {
		if _, dup := got[n.Addr]; dup {
			t.Errorf("%s answered twice", n.Addr)
		}
		got[n.Addr] = n.Service
		if !n.Ready || n.Draining || n.Version == "" || len(n.Metrics) == 0 {
			t.Errorf("node %s %s: ready %v draining %v version %q, %d series (%s)", n.Service, n.Addr, n.Ready,
				n.Draining, n.Version, len(n.Metrics), n.NotReady)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d nodes answered chat.ops.stats: %v, want %d: %v", len(got), got, len(want), want)
	}
	for addr, svc := range want {
		if got[addr] != svc {
			t.Errorf("%s: answered as %q, want %s", addr, got[addr], svc)
		}
	}

	status, body, err := get(e.topo.URL + "/admin/api/stats")
	if err != nil || status != 200 {
		t.Fatalf("GET /admin/api/stats through nginx: %d %v %s", status, err, body)
	}
	var st struct {
		Nodes  []ops.Stats `json:"nodes"`
		Stream struct {
			LastSeq uint64 `json:"last_seq"`
			Cluster struct {
				Leader   string `json:"leader"`
				Replicas []struct {
					Name string `json:"name"`
				} `json:"replicas"`
			} `json:"cluster"`
		} `json:"stream"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != len(want) {
		t.Errorf("the admin stats list %d nodes, want %d", len(st.Nodes), len(want))
	}
	servers := []string{st.Stream.Cluster.Leader}
	for _, r := range st.Stream.Cluster.Replicas {
		servers = append(servers, r.Name)
	}
	slices.Sort(servers)
	var natsNames []string
	for _, p := range e.topo.NATS {
		natsNames = append(natsNames, p.Name)
	}
	if !slices.Equal(servers, natsNames) {
		t.Errorf("stream held by %v, want %v", servers, natsNames)
	}
	if status, _, err := get(e.topo.URL + "/admin"); err != nil || status != 200 {
		t.Errorf("GET /admin through nginx: %d %v", status, err)
	}
}
