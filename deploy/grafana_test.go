package deploy

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestGrafanaDashboard: deploy/grafana/chat.json is a valid dashboard, and every chat_*
// metric it queries is defined in the services' (or pkg's) code.
func TestGrafanaDashboard(t *testing.T) {
	root := repoRoot(t)
	var d struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(root, "deploy", "grafana", "chat.json"))), &d); err != nil {
		t.Fatalf("chat.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatal("dashboard without uid, title or panels")
	}

	defined := map[string]bool{}
	def := regexp.MustCompile(`"(chat_[a-z0-9_]+)"`)
	for _, dir := range []string{"services", "pkg"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range def.FindAllStringSubmatch(string(b), -1) {
				defined[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(defined) < 10 {
		t.Fatalf("found only %d metric names in the code", len(defined))
	}

	used := regexp.MustCompile(`\bchat_[a-z0-9_]+`)
	queried := map[string]bool{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := used.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q uses no chat_ metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				base := n
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if !defined[base] {
						base = strings.TrimSuffix(base, suf)
					}
				}
				if !defined[base] {
					t.Errorf("panel %q queries %s, which no service defines", p.Title, n)
				}
				queried[base] = true
			}
		}
	}
	// The list: each service's key metrics are on the dashboard.
	for _, m := range []string{"chat_api_posts_total", "chat_api_publish_ack_seconds", "chat_persister_batch_size",
		"chat_persister_write_seconds", "chat_persister_consumer_pending", "chat_persister_deadletter_total",
		"chat_persister_redeliveries_total", "chat_pusher_connections", "chat_pusher_subscriptions",
		"chat_pusher_frames_sent_total", "chat_pusher_evictions_total", "chat_pusher_replays_total", "chat_pusher_queue_depth_max"} {
		if !queried[m] {
			t.Errorf("dashboard does not show %s", m)
		}
	}
}
