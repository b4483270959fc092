package deploy

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	natsserver "github.com/nats-io/nats-server/v2/server"
)

// loadCompose loads docker-compose.yml as docker compose would, without an engine:
// interpolation from env only (not the OS environment), normalisation, consistency.
func loadCompose(t *testing.T, env ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithName("chat-test"),
		cli.WithEnv(env),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func TestComposeServices(t *testing.T) {
	p := loadCompose(t)
	want := []string{"api", "lb", "mongo", "mongo-init", "nats-1", "nats-2", "nats-3", "persister", "pusher"}
	if got := p.ServiceNames(); !slices.Equal(sortedCopy(got), want) {
		t.Fatalf("services = %v, want %v", sortedCopy(got), want)
	}
	replicas := map[string]int{"api": 2, "persister": 2, "pusher": 3}
	for _, name := range p.ServiceNames() {
		svc := p.Services[name]
		want, ok := replicas[name]
		if !ok {
			want = 1
		}
		if got := svc.GetScale(); got != want {
			t.Errorf("%s: replicas = %d, want %d", name, got, want)
		}
		if svc.ContainerName != "" {
			t.Errorf("%s: container_name set; it prevents scaling", name)
		}
		if name != "lb" && len(svc.Ports) > 0 {
			t.Errorf("%s: publishes ports; only lb may", name)
		}
	}
	lb := p.Services["lb"]
	if len(lb.Ports) != 1 || lb.Ports[0].Target != 8080 || lb.Ports[0].Published != "8080" {
		t.Errorf("lb ports = %+v, want 8080:8080", lb.Ports)
	}
}

func TestComposeChatServices(t *testing.T) {
	p := loadCompose(t)
	for _, name := range chatServices {
		svc := p.Services[name]
		t.Run(name, func(t *testing.T) {
			if svc.Build == nil {
				t.Fatal("no build section")
			}
			if svc.Build.Context != repoRoot(t) {
				t.Errorf("build context = %s, want the repository root", svc.Build.Context)
			}
			if df := svc.Build.Dockerfile; filepath.Base(df) != "Dockerfile" {
				t.Errorf("dockerfile = %q", df)
			}
			if arg := svc.Build.Args["SERVICE"]; arg == nil || *arg != name {
				t.Errorf("build arg SERVICE = %v, want %q", arg, name)
			}
			if svc.Image == "" {
				t.Error("no image name")
			}
			hc := svc.HealthCheck
			if hc == nil || hc.Disable {
				t.Fatal("no health check")
			}
			if want := []string{"CMD", "/usr/local/bin/healthcheck", "/readyz"}; !slices.Equal(hc.Test, want) {
				t.Errorf("healthcheck test = %q, want %q", hc.Test, want)
			}
			if svc.StopGracePeriod == nil || time.Duration(*svc.StopGracePeriod) < 20*time.Second {
				t.Errorf("stop_grace_period = %v, want >= 20s (services drain for up to 15s)", svc.StopGracePeriod)
			}
			for _, dep := range []string{"nats-1", "nats-2", "nats-3"} {
				if c := svc.DependsOn[dep].Condition; c != types.ServiceConditionHealthy {
					t.Errorf("depends_on %s condition = %q", dep, c)
				}
			}
			if c := svc.DependsOn["mongo-init"].Condition; c != types.ServiceConditionCompletedSuccessfully {
				t.Errorf("depends_on mongo-init condition = %q", c)
			}
			checkEnv(t, name, svc.Environment)
		})
	}
	lb := p.Services["lb"]
	for _, dep := range []string{"api", "pusher"} {
		if c := lb.DependsOn[dep].Condition; c != types.ServiceConditionHealthy {
			t.Errorf("lb depends_on %s condition = %q", dep, c)
		}
	}
}

func checkEnv(t *testing.T, service string, env types.MappingWithEquals) {
	t.Helper()
	for k, v := range env {
		if !contains(allowedEnv[service], k) {
			t.Errorf("env %s is not a documented setting of %s", k, service)
		}
		if v == nil || *v == "" {
			t.Errorf("env %s has no value", k)
		}
	}
	for _, k := range requiredEnv {
		if env[k] == nil {
			t.Errorf("env %s missing", k)
		}
	}
	if v := env["CHAT_HTTP_ADDR"]; v != nil && *v != ":8080" {
		t.Errorf("CHAT_HTTP_ADDR = %q, want :8080", *v)
	}
	if v := env["CHAT_STREAM_REPLICAS"]; v != nil && *v != "3" {
		t.Errorf("CHAT_STREAM_REPLICAS = %q, want 3 (three NATS servers)", *v)
	}
	if (service == "pusher" || service == "api") && env["CHAT_ALLOWED_ORIGINS"] == nil {
		t.Errorf("%s: CHAT_ALLOWED_ORIGINS missing", service)
	}
}

func TestComposeEndpoints(t *testing.T) {
	p := loadCompose(t)
	env := p.Services["api"].Environment
	var hosts []string
	for _, raw := range strings.Split(*env["CHAT_NATS_URL"], ",") {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "nats" {
			t.Fatalf("CHAT_NATS_URL entry %q: %v", raw, err)
		}
		hosts = append(hosts, u.Host)
	}
	if want := []string{"nats-1:4222", "nats-2:4222", "nats-3:4222"}; !slices.Equal(hosts, want) {
		t.Errorf("CHAT_NATS_URL hosts = %v, want %v", hosts, want)
	}
	u, err := url.Parse(*env["CHAT_MONGO_URI"])
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != "mongo:27017" || u.Query().Get("replicaSet") != "rs0" {
		t.Errorf("CHAT_MONGO_URI = %s, want host mongo:27017 and replicaSet=rs0", u)
	}
	// The same endpoints for every service.
	for _, name := range chatServices {
		e := p.Services[name].Environment
		for _, k := range []string{"CHAT_NATS_URL", "CHAT_MONGO_URI"} {
			if *e[k] != *env[k] {
				t.Errorf("%s: %s differs from api's", name, k)
			}
		}
	}
}

func TestComposeAllowedOriginsOverride(t *testing.T) {
	p := loadCompose(t, "CHAT_ALLOWED_ORIGINS=https://chat.example.com")
	for _, svc := range []string{"api", "pusher"} {
		if v := p.Services[svc].Environment["CHAT_ALLOWED_ORIGINS"]; v == nil || *v != "https://chat.example.com" {
			t.Errorf("%s: CHAT_ALLOWED_ORIGINS = %v, want the value from the environment", svc, v)
		}
	}
	p = loadCompose(t, "CHAT_PORT=9090")
	if got := p.Services["lb"].Ports[0].Published; got != "9090" {
		t.Errorf("CHAT_PORT=9090: lb publishes %s", got)
	}
}

func TestComposeBindMountsExist(t *testing.T) {
	p := loadCompose(t)
	for _, name := range p.ServiceNames() {
		for _, v := range p.Services[name].Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s: bind source: %v", name, err)
			}
			if !v.ReadOnly {
				t.Errorf("%s: bind mount %s is writable", name, v.Source)
			}
		}
	}
}

func TestComposeNATSCluster(t *testing.T) {
	p := loadCompose(t)
	root := repoRoot(t)
	volumes := map[string]bool{}
	for _, name := range []string{"nats-1", "nats-2", "nats-3"} {
		svc := p.Services[name]
		if !strings.HasPrefix(svc.Image, "nats:2.") {
			t.Errorf("%s: image %s, want nats:2.x", name, svc.Image)
		}
		if v := svc.Environment["NATS_SERVER_NAME"]; v == nil || *v != name {
			t.Errorf("%s: NATS_SERVER_NAME = %v", name, v)
		}
		if svc.StopSignal != "SIGUSR2" {
			t.Errorf("%s: stop_signal = %q, want SIGUSR2 (lame duck mode)", name, svc.StopSignal)
		}
		if svc.HealthCheck == nil || !strings.Contains(strings.Join(svc.HealthCheck.Test, " "), ":8222/healthz") {
			t.Errorf("%s: health check should probe :8222/healthz", name)
		}
		var store string
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeVolume {
				store = v.Source
				if v.Target != "/data" {
					t.Errorf("%s: store volume at %s, want /data (jetstream store_dir)", name, v.Target)
				}
			}
		}
		if store == "" || volumes[store] {
			t.Errorf("%s: needs its own JetStream store volume, got %q", name, store)
		}
		volumes[store] = true

		// The mounted server config, as this member reads it.
		t.Setenv("NATS_SERVER_NAME", name)
		opts, err := natsserver.ProcessConfigFile(filepath.Join(root, "deploy/nats/nats.conf"))
		if err != nil {
			t.Fatalf("nats.conf: %v", err)
		}
		if opts.ServerName != name || !opts.JetStream || opts.StoreDir != "/data" || opts.Cluster.Name != "chat" || opts.Cluster.Port != 6222 || opts.HTTPPort != 8222 {
			t.Errorf("nats.conf as %s: server_name=%q jetstream=%v store=%q cluster=%q:%d http=%d",
				name, opts.ServerName, opts.JetStream, opts.StoreDir, opts.Cluster.Name, opts.Cluster.Port, opts.HTTPPort)
		}
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Host)
		}
		if want := []string{"nats-1:6222", "nats-2:6222", "nats-3:6222"}; !slices.Equal(routes, want) {
			t.Errorf("routes = %v, want %v", routes, want)
		}
		if grace := time.Duration(*svc.StopGracePeriod); grace <= opts.LameDuckDuration {
			t.Errorf("%s: stop_grace_period %v must exceed lame_duck_duration %v", name, grace, opts.LameDuckDuration)
		}
	}
}

func TestComposeMongoReplicaSet(t *testing.T) {
	p := loadCompose(t)
	mongo := p.Services["mongo"]
	if mongo.Image != "mongo:7" {
		t.Errorf("mongo image = %s", mongo.Image)
	}
	if cmd := strings.Join(mongo.Command, " "); !strings.Contains(cmd, "--replSet rs0") {
		t.Errorf("mongo command %q lacks --replSet rs0", cmd)
	}
	if mongo.HealthCheck == nil {
		t.Error("mongo: no health check")
	}
	mongoInit := p.Services["mongo-init"]
	if mongoInit.Restart != "no" {
		t.Errorf("mongo-init restart = %q, want no (one-shot)", mongoInit.Restart)
	}
	if c := mongoInit.DependsOn["mongo"].Condition; c != types.ServiceConditionHealthy {
		t.Errorf("mongo-init depends_on mongo = %q", c)
	}
	cmd := strings.Join(mongoInit.Command, " ")
	if len(mongoInit.Volumes) != 1 || !strings.Contains(cmd, mongoInit.Volumes[0].Target) || !strings.HasPrefix(cmd, "mongosh --host mongo:27017") {
		t.Fatalf("mongo-init should run the mounted script with mongosh against mongo:27017: %q %+v", cmd, mongoInit.Volumes)
	}
	script := readFile(t, mongoInit.Volumes[0].Source)
	for _, want := range []string{`_id: "rs0"`, `host: "mongo:27017"`, "NotYetInitialized", "AlreadyInitialized", "isWritablePrimary"} {
		if !strings.Contains(script, want) {
			t.Errorf("init script lacks %s", want)
		}
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
