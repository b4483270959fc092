package deploy

import (
	"os"
	"path/filepath"
	"testing"
)

// repoRoot is the repository root: the deploy package directory's parent.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	return root
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// chatServices are the three service binaries; each is a compose service and a
// Kubernetes Deployment (chat-<name>).
var chatServices = []string{"api", "persister", "pusher"}

// allowedEnv lists, per service, the environment variables it reads: the contract's
// Configuration section (CHAT_NATS_URL, CHAT_MONGO_URI, CHAT_HTTP_ADDR) plus the
// documented service settings CHAT_STREAM_* (chat.StreamOptions, all services),
// CHAT_SHUTDOWN_TIMEOUT (all), CHAT_TRUSTED_PROXIES (api) and CHAT_ALLOWED_ORIGINS
// (api and pusher).
var allowedEnv = map[string][]string{
	"api":       {"CHAT_NATS_URL", "CHAT_MONGO_URI", "CHAT_HTTP_ADDR", "CHAT_STREAM_REPLICAS", "CHAT_SHUTDOWN_TIMEOUT", "CHAT_TRUSTED_PROXIES", "CHAT_ALLOWED_ORIGINS"},
	"persister": {"CHAT_NATS_URL", "CHAT_MONGO_URI", "CHAT_HTTP_ADDR", "CHAT_STREAM_REPLICAS", "CHAT_SHUTDOWN_TIMEOUT"},
	"pusher":    {"CHAT_NATS_URL", "CHAT_MONGO_URI", "CHAT_HTTP_ADDR", "CHAT_STREAM_REPLICAS", "CHAT_SHUTDOWN_TIMEOUT", "CHAT_ALLOWED_ORIGINS"},
}

// requiredEnv must be set for every service in every deployment.
var requiredEnv = []string{"CHAT_NATS_URL", "CHAT_MONGO_URI", "CHAT_HTTP_ADDR", "CHAT_STREAM_REPLICAS"}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
