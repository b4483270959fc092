package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/chattest"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// TestBrowserAdmin opens /admin in headless Chromium against the all-in-one: it shows the
// three nodes (api, persister, pusher) answering chat.ops.stats with their numbers, the
// stream, and a dead letter whose preview is text (markup is not run). Requeue asks
// first: dismissed, nothing happens; accepted, the dead letter leaves the list and its
// message is stored in history. CHAT_ADMIN_SCREENSHOT=/path.png saves a screenshot.
func TestBrowserAdmin(t *testing.T) {
	allocCtx := newBrowser(t)
	sys := startSystemWith(t, testConfig(t))
	_, js := connectNATS(t, sys)
	const room = "admin-requeue"
	text := `<img src=x onerror=document.title=1> back`
	seq := publishDeadLetter(t, js, "chat.messages."+room, "test: mongodb was down",
		[]byte(`{"name":"Ann","message":"`+text+`"}`))
	postMessage(t, sys.url, "elsewhere", "Bo", "some traffic")

	tb := newTab(t, allocCtx, "admin")
	var (
		mu      sync.Mutex
		dialogs []string
		accept  bool
	)
	dctx, stop := context.WithCancel(tb.ctx)
	defer stop()
	events := chromedp.Events(dctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			mu.Lock()
			dialogs = append(dialogs, ev.Message)
			ok := accept
			mu.Unlock()
			_, _ = chromedp.Call(dctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: ok})
		}
	}()
	tb.do(chromedp.Navigate(sys.url + "/admin"))

	// The nodes, with rates once two answers came in.
	tb.poll(`[...document.querySelectorAll('#nodes tbody tr')].map((r) => r.dataset.service).sort().join() === 'api,persister,pusher'`)
	tb.poll(`document.getElementById('node-count').textContent === '(3: 1 api, 1 persister, 1 pusher)'`)
	tb.poll(`document.querySelector('#nodes tr[data-service="api"] td:nth-child(6)').textContent === 'ready'`)
	tb.poll(`/201: /.test(document.querySelector('#nodes tr[data-service="api"] td:nth-child(13)').textContent)`)
	tb.poll(`document.getElementById('stream').textContent.includes('epoch')`)
	tb.poll(`document.getElementById('status').textContent.startsWith('updated')`)

	// The dead letter, its payload shown as text.
	row := fmt.Sprintf(`#deadletters tr[data-seq="%d"]`, seq)
	tb.poll(`document.querySelector('` + row + `') !== null`)
	if got := tb.eval(`document.querySelector('` + row + ` td:nth-child(3)').textContent`); got != "test: mongodb was down" {
		t.Fatalf("reason %q", got)
	}
	if got := tb.eval(`document.querySelector('` + row + ` td:nth-child(4)').textContent`); got != "chat.messages."+room {
		t.Fatalf("subject %q", got)
	}
	if got := tb.eval(`document.querySelector('` + row + ` td.preview').textContent`); !strings.Contains(got, text) {
		t.Fatalf("preview %q does not show %q as text", got, text)
	}
	if n := tb.eval(`document.querySelectorAll('#deadletters img').length`); n != "0" {
		t.Fatalf("%s img elements: markup was rendered", n)
	}

	// Dismissed: nothing happens. Accepted: requeued, stored.
	tb.do(chromedp.Click(chromedp.CSS(row + ` button.requeue`)))
	tb.poll(`document.querySelector('` + row + `') !== null`)
	mu.Lock()
	accept = true
	mu.Unlock()
	// The key press goes to the focused button: the page works with the keyboard.
	tb.do(chromedp.Focus(chromedp.CSS(row+` button.requeue`)), chromedp.KeyEvent("\r"))
	tb.poll(`document.getElementById('dl-status').textContent.startsWith('Requeued ` + strconv.FormatUint(seq, 10) + ` to chat.messages.` + room + `')`)
	tb.poll(`document.querySelector('` + row + `') === null`)
	mu.Lock()
	got := append([]string(nil), dialogs...)
	mu.Unlock()
	want := fmt.Sprintf("Requeue dead letter %d: publish its original bytes to chat.messages.%s again?", seq, room)
	if len(got) != 2 || got[0] != want || got[1] != want {
		t.Fatalf("dialogs %q, want twice %q", got, want)
	}
	chattest.Eventually(t, 10*time.Second, func() bool {
		h := getHistory(t, sys.url+"/rooms/"+room+"/messages")
		return len(h) == 1 && h[0]["message"] == text
	}, "requeued message not stored")
	if path := os.Getenv("CHAT_ADMIN_SCREENSHOT"); path != "" { // a look at the page, for humans
		for range 3 { // a few refreshes for the charts
			postMessage(t, sys.url, "elsewhere", "Bo", "more traffic")
			time.Sleep(1600 * time.Millisecond)
		}
		png, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if title := tb.eval(`document.title`); title != "Chat admin" {
		t.Fatalf("title %q", title)
	}
	tb.checkNoExceptions()
}
