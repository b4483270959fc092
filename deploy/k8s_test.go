package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifests holds every object under deploy/k8s, decoded strictly (unknown or
// duplicate fields fail) into its k8s.io/api type.
type manifests struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	ingresses   map[string]*networkingv1.Ingress
	files       []string // resource files, for kustomization.yaml
}

// notResources are the files under deploy/k8s that are not applied as manifests.
var notResources = []string{"kustomization.yaml", "nats-values.yaml"}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		configMaps:  map[string]*corev1.ConfigMap{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		hpas:        map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		ingresses:   map[string]*networkingv1.Ingress{},
	}
	paths, err := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		if contains(notResources, filepath.Base(path)) {
			continue
		}
		m.files = append(m.files, filepath.Base(path))
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader([]byte(readFile(t, path)))))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			if err := m.add(doc); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
	}
	return m
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func (m *manifests) add(doc []byte) error {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return err
	}
	name := meta.Metadata.Name
	if name == "" {
		return errors.New(meta.Kind + " without metadata.name")
	}
	strict := func(obj any) error {
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return errors.New(meta.Kind + " " + name + ": " + err.Error())
		}
		return nil
	}
	dup := func(exists bool) error {
		if exists {
			return errors.New("duplicate " + meta.Kind + " " + name)
		}
		return nil
	}
	switch meta.APIVersion + " " + meta.Kind {
	case "apps/v1 Deployment":
		obj := &appsv1.Deployment{}
		_, exists := m.deployments[name]
		m.deployments[name] = obj
		return errors.Join(dup(exists), strict(obj))
	case "v1 Service":
		obj := &corev1.Service{}
		_, exists := m.services[name]
		m.services[name] = obj
		return errors.Join(dup(exists), strict(obj))
	case "v1 ConfigMap":
		obj := &corev1.ConfigMap{}
		_, exists := m.configMaps[name]
		m.configMaps[name] = obj
		return errors.Join(dup(exists), strict(obj))
	case "policy/v1 PodDisruptionBudget":
		obj := &policyv1.PodDisruptionBudget{}
		_, exists := m.pdbs[name]
		m.pdbs[name] = obj
		return errors.Join(dup(exists), strict(obj))
	case "autoscaling/v2 HorizontalPodAutoscaler":
		obj := &autoscalingv2.HorizontalPodAutoscaler{}
		_, exists := m.hpas[name]
		m.hpas[name] = obj
		return errors.Join(dup(exists), strict(obj))
	case "networking.k8s.io/v1 Ingress":
		obj := &networkingv1.Ingress{}
		_, exists := m.ingresses[name]
		m.ingresses[name] = obj
		return errors.Join(dup(exists), strict(obj))
	}
	return errors.New("unexpected object " + meta.APIVersion + " " + meta.Kind + " " + name)
}

func TestK8sStrictDecodeRejectsUnknownFields(t *testing.T) {
	m := loadManifests(t)
	err := m.add([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n"))
	if err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("misspelt field accepted: %v", err)
	}
}

func TestK8sDeployments(t *testing.T) {
	m := loadManifests(t)
	if len(m.deployments) != len(chatServices) {
		t.Errorf("%d deployments, want %d", len(m.deployments), len(chatServices))
	}
	for _, svc := range chatServices {
		t.Run(svc, func(t *testing.T) {
			d := m.deployments["chat-"+svc]
			if d == nil {
				t.Fatal("no Deployment chat-" + svc)
			}
			spec := d.Spec.Template.Spec
			if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
				t.Errorf("selector %v does not select template labels %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
			}
			switch svc {
			case "pusher":
				if d.Spec.Replicas != nil {
					t.Error("spec.replicas set; the HorizontalPodAutoscaler owns it")
				}
			default:
				if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
					t.Errorf("replicas = %v, want >= 2", d.Spec.Replicas)
				}
			}
			if len(spec.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(spec.Containers))
			}
			c := spec.Containers[0]
			if !strings.HasPrefix(c.Image, "chatrt/chat-"+svc+":") {
				t.Errorf("image = %s", c.Image)
			}
			env := containerEnv(t, m, c)
			for k := range env {
				if !contains(allowedEnv[svc], k) {
					t.Errorf("env %s is not a documented setting of %s", k, svc)
				}
			}
			for _, k := range requiredEnv {
				if _, ok := env[k]; !ok {
					t.Errorf("env %s missing", k)
				}
			}
			if svc == "pusher" || svc == "api" {
				if _, ok := env["CHAT_ALLOWED_ORIGINS"]; !ok {
					t.Errorf("%s: CHAT_ALLOWED_ORIGINS missing", svc)
				}
			}
			// Probes must reach the port the service listens on (CHAT_HTTP_ADDR).
			listen := portOf(t, env["CHAT_HTTP_ADDR"])
			checkProbe(t, "readiness", c.ReadinessProbe, "/readyz", c, listen)
			checkProbe(t, "liveness", c.LivenessProbe, "/healthz", c, listen)

			grace := time.Duration(ptrValue(spec.TerminationGracePeriodSeconds)) * time.Second
			var preStop time.Duration
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			}
			// Default CHAT_SHUTDOWN_TIMEOUT is 15s.
			if grace < preStop+15*time.Second+5*time.Second {
				t.Errorf("terminationGracePeriodSeconds %v too short for preStop %v + 15s drain", grace, preStop)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("resources = %+v, want cpu+memory requests and a memory limit", c.Resources)
			}
			psc := spec.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || ptrValue(psc.RunAsUser) != 65532 {
				t.Errorf("pod securityContext = %+v, want runAsNonRoot and uid 65532", psc)
			}
			if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("container securityContext = %+v", sc)
			}
			s := m.services["chat-"+svc]
			if s == nil {
				t.Fatal("no Service chat-" + svc)
			}
			if !selects(s.Spec.Selector, d.Spec.Template.Labels) {
				t.Errorf("Service selector %v does not select the pods", s.Spec.Selector)
			}
			if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
				t.Error("Service has session affinity")
			}
			for _, p := range s.Spec.Ports {
				if resolvePort(c, p.TargetPort) != listen {
					t.Errorf("Service port %s targets %s, not the listen port %d", p.Name, p.TargetPort.String(), listen)
				}
			}
		})
	}
}

// containerEnv returns the container's environment: env entries plus envFrom
// ConfigMaps (which must exist in the manifests).
func containerEnv(t *testing.T, m *manifests, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Errorf("envFrom %+v: only ConfigMaps expected", from)
			continue
		}
		cm := m.configMaps[from.ConfigMapRef.Name]
		if cm == nil {
			t.Fatalf("envFrom ConfigMap %s not in the manifests", from.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.Value != "":
			env[e.Name] = e.Value
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "<secret " + e.ValueFrom.SecretKeyRef.Name + ">"
		default:
			t.Errorf("env %s has no value", e.Name)
		}
	}
	return env
}

func checkProbe(t *testing.T, kind string, p *corev1.Probe, path string, c corev1.Container, listen int) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe: want an httpGet probe", kind)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s probe path = %s, want %s", kind, p.HTTPGet.Path, path)
	}
	if got := resolvePort(c, p.HTTPGet.Port); got != listen {
		t.Errorf("%s probe port %s = %d, want %d", kind, p.HTTPGet.Port.String(), got, listen)
	}
}

// resolvePort maps a port number or container port name to a number (0: unknown).
func resolvePort(c corev1.Container, p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return 0
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	n, err := strconv.Atoi(addr[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("CHAT_HTTP_ADDR %q: no port", addr)
	}
	return n
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func ptrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func TestK8sPusherScaling(t *testing.T) {
	m := loadManifests(t)
	pods := m.deployments["chat-pusher"].Spec.Template.Labels
	pdb := m.pdbs["chat-pusher"]
	if pdb == nil || len(m.pdbs) != 1 {
		t.Fatalf("want one PodDisruptionBudget chat-pusher, got %d", len(m.pdbs))
	}
	if !selects(pdb.Spec.Selector.MatchLabels, pods) {
		t.Error("PDB does not select the pusher pods")
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PDB maxUnavailable = %v, want 1 (one reconnect wave at a time)", pdb.Spec.MaxUnavailable)
	}
	hpa := m.hpas["chat-pusher"]
	if hpa == nil || len(m.hpas) != 1 {
		t.Fatalf("want one HorizontalPodAutoscaler chat-pusher, got %d", len(m.hpas))
	}
	ref := hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != "chat-pusher" {
		t.Errorf("HPA targets %+v", ref)
	}
	if minR := ptrValue(hpa.Spec.MinReplicas); minR < 2 || hpa.Spec.MaxReplicas <= minR {
		t.Errorf("HPA replicas %d..%d", minR, hpa.Spec.MaxReplicas)
	}
	if len(hpa.Spec.Metrics) == 0 {
		t.Error("HPA without metrics")
	}
	if b := hpa.Spec.Behavior; b == nil || b.ScaleDown == nil || ptrValue(b.ScaleDown.StabilizationWindowSeconds) < 300 {
		t.Error("HPA should scale pushers down slowly (each removal reconnects its clients)")
	}
}

func TestK8sIngress(t *testing.T) {
	m := loadManifests(t)
	ing := m.ingresses["chat"]
	if ing == nil || len(m.ingresses) != 1 {
		t.Fatal("want one Ingress chat")
	}
	for _, key := range []string{"nginx.ingress.kubernetes.io/proxy-read-timeout", "nginx.ingress.kubernetes.io/proxy-send-timeout"} {
		if n, err := strconv.Atoi(ing.Annotations[key]); err != nil || n < 3600 {
			t.Errorf("%s = %q, want >= 3600 (WebSockets)", key, ing.Annotations[key])
		}
	}
	var paths []networkingv1.HTTPIngressPath
	for _, rule := range ing.Spec.Rules {
		for _, p := range rule.HTTP.Paths {
			paths = append(paths, p)
			svc := m.services[p.Backend.Service.Name]
			if svc == nil {
				t.Errorf("path %s: no Service %s", p.Path, p.Backend.Service.Name)
				continue
			}
			found := slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
				return (sp.Name != "" && sp.Name == p.Backend.Service.Port.Name) || sp.Port == p.Backend.Service.Port.Number
			})
			if !found {
				t.Errorf("path %s: Service %s has no port %+v", p.Path, svc.Name, p.Backend.Service.Port)
			}
		}
	}
	// /ws goes to the pushers, the public api and UI to the api, and nothing else is
	// routed: /metrics and /readyz get the controller's 404 (Prometheus and probes reach
	// the pods directly).
	want := map[string]string{
		"/ws":                     "chat-pusher",
		"/":                       "chat-api",
		"/messages":               "chat-api",
		"/rooms/general/messages": "chat-api",
		"/rooms/a-b_c/messages":   "chat-api",
		"/healthz":                "chat-api",
		"/metrics":                "",
		"/metrics/":               "",
		"/readyz":                 "",
		"/readyz/x":               "",
		"/ws/x":                   "",
		"/roomsx":                 "",
		"/debug/pprof/":           "",
		"/chat.js/x":              "",
		"/openapi.json":           "chat-api",
		"/admin":                  "chat-api",
		"/admin/api/stats":        "chat-api",
		"/adminx":                 "",
	}
	// Every file the UI serves must be reachable, so a new one is not silently cut off.
	static, err := filepath.Glob(filepath.Join("..", "services", "api", "internal", "web", "static", "*"))
	if err != nil || len(static) == 0 {
		t.Fatalf("UI files: %v %v", static, err)
	}
	for _, f := range static {
		want["/"+filepath.Base(f)] = "chat-api"
	}
	for path, svc := range want {
		if got := ingressRoute(paths, path); got != svc {
			t.Errorf("ingress routes %s to %q, want %q", path, got, svc)
		}
	}
}

// ingressRoute is the Service the Ingress sends path to ("" for none), by the matching
// rules of networking.k8s.io/v1: Exact matches the whole path, Prefix whole elements of
// it ("/rooms" matches /rooms and /rooms/x, not /roomsx); the longest match wins and
// Exact wins over Prefix of the same length.
func ingressRoute(paths []networkingv1.HTTPIngressPath, path string) string {
	best, bestLen, bestExact := "", -1, false
	for _, p := range paths {
		var ok, exact bool
		switch ptrValue(p.PathType) {
		case networkingv1.PathTypeExact:
			ok, exact = path == p.Path, true
		case networkingv1.PathTypePrefix:
			prefix := strings.TrimSuffix(p.Path, "/")
			ok = prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/")
		default:
			continue // ImplementationSpecific: not used here
		}
		if !ok {
			continue
		}
		if l := len(p.Path); l > bestLen || (l == bestLen && exact && !bestExact) {
			best, bestLen, bestExact = p.Backend.Service.Name, l, exact
		}
	}
	return best
}

func TestK8sKustomization(t *testing.T) {
	m := loadManifests(t)
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	if err := yaml.UnmarshalStrict([]byte(readFile(t, filepath.Join("k8s", "kustomization.yaml"))), &k); err != nil {
		t.Fatal(err)
	}
	if k.Kind != "Kustomization" || !slices.Equal(sortedCopy(k.Resources), sortedCopy(m.files)) {
		t.Errorf("kustomization resources = %v, want every manifest %v", k.Resources, m.files)
	}
	var values map[string]any
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join("k8s", "nats-values.yaml"))), &values); err != nil {
		t.Errorf("nats-values.yaml: %v", err)
	}
}
