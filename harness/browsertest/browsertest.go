// Package browsertest starts headless Chromium for tests that drive the UI with chromedp
// (cmd/chat's browser tests, the scaled topology's admin page).
package browsertest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/chromedp"
)

// ChromiumPath is where Debian's chromium package installs the browser (.ci/run installs it).
const ChromiumPath = "/usr/bin/chromium"

// Allocator starts headless Chromium with a window of width × height and returns the
// context to open tabs in; the browser closes at the test's end or after timeout.
// Without Chromium the test skips, or fails when CI is set.
func Allocator(t testing.TB, timeout time.Duration, width, height int) context.Context {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium is required in CI (apt-get install chromium): %v", err)
		}
		t.Skipf("no chromium (apt-get install chromium): %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(ChromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	)
	t.Cleanup(cancelAlloc)
	return allocCtx
}

// Run runs a JavaScript action (Evaluate, Poll, Value) in the tab of ctx like chromedp.Run,
// and runs it again while Chromium answers that the page's JavaScript context is gone.
//
// chromedp learns of a page's new JavaScript context from events it handles apart from the
// load event Navigate and Reload wait for, so an action started just after them can still
// name the previous page's context, which the navigation destroyed: Chromium then refuses
// the call ("Cannot find context with specified id", -32000) without running it (chromedp
// issue #1139; puppeteer #1325). The new context arrives within milliseconds; running the
// action again then is what a user of the page would see. Other errors return at once.
func Run[T any](ctx context.Context, action chromedp.Action[T]) (T, error) {
	for try := 0; ; try++ {
		v, err := chromedp.Run(ctx, action)
		if err == nil || !contextGone(err) || try == contextGoneRetries {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// contextGoneRetries bounds Run's retries: 100 × 20 ms, far more than a navigation takes
// to bring its new context, and a page that keeps navigating still fails the test.
const contextGoneRetries = 100

func contextGone(err error) bool {
	var e *cdproto.Error
	return errors.As(err, &e) && e.Code == -32000 && e.Message == "Cannot find context with specified id"
}
