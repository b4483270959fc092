package browsertest

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestRunAfterNavigation polls a page right after navigating to it from another one, the
// moment chromedp may still name the old page's JavaScript context. chromedp.Run fails
// there now and then (a third of the tries on this machine under load); Run must not.
func TestRunAfterNavigation(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<!doctype html><title>loaded</title><p>page</p>`))
	}))
	defer srv.Close()
	ctx, cancel := chromedp.NewContext(Allocator(t, 2*time.Minute, 800, 600))
	defer cancel()
	for i := range 40 {
		if err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(srv.URL+"/#main")); err != nil {
			t.Fatal(err)
		}
		if _, err := Run(ctx, chromedp.Poll[chromedp.Void](`document.title === 'loaded'`,
			chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(5*time.Second))); err != nil {
			t.Fatalf("try %d: %v", i, err)
		}
		if v, err := Run(ctx, chromedp.Evaluate[string](`location.hash`)); err != nil || v != "#main" {
			t.Fatalf("try %d: location.hash = %q, %v", i, v, err)
		}
	}
}
