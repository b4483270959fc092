package topology_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/browsertest"
	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/chat"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
)

// adminPageInBrowser opens /admin through nginx in headless Chromium (auth off: nginx on
// loopback is the api's loopback peer) and waits until the page lists every api,
// persister and pusher of the topology by address, each ready. A dead letter whose
// original bytes are a valid message is published; the page shows it, Requeue is clicked
// and its confirm dialog accepted; the dead letter leaves the page and the message is in
// the room's history (GET /rooms/{room}/messages through nginx).
func adminPageInBrowser(t *testing.T, e *env) {
	tb := newAdminTab(t)
	var (
		mu      sync.Mutex
		dialogs []string
	)
	events := chromedp.Events(tb.ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			mu.Lock()
			dialogs = append(dialogs, ev.Message)
			mu.Unlock()
			_, _ = chromedp.Call(tb.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	tb.do(chromedp.Navigate(e.topo.URL + "/admin"))

	// Every node of the topology, by address and service, ready.
	var want []string
	add := func(svc string, addrs ...string) {
		for _, a := range addrs {
			want = append(want, svc+" "+a)
		}
	}
	for _, p := range e.topo.APIs {
		add("api", p.Addr)
	}
	for _, p := range e.topo.Persisters {
		add("persister", p.Addr)
	}
	for _, p := range e.topo.Pushers {
		add("pusher", p.Addr)
	}
	slices.Sort(want)
	wantJSON, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	tb.poll(`JSON.stringify([...document.querySelectorAll('#nodes tbody tr')]
		.filter((r) => r.querySelector('td:nth-child(6)').textContent === 'ready')
		.map((r) => r.dataset.service + ' ' + r.dataset.addr).sort()) === ` + strconv.Quote(string(wantJSON)))
	counts := fmt.Sprintf("(%d: %d api, %d persister, %d pusher)", len(want), len(e.topo.APIs),
		len(e.topo.Persisters), len(e.topo.Pushers))
	tb.poll(`document.getElementById('node-count').textContent === ` + strconv.Quote(counts))

	// A dead letter that is a valid message once requeued (as if MongoDB had been down).
	room := fmt.Sprintf("admin-topology-%d", time.Now().UnixNano())
	text := "requeued through the admin page"
	m := nats.NewMsg(chat.DeadLetterSubject)
	m.Data = []byte(`{"name":"Ann","message":"` + text + `"}`)
	m.Header.Set(chat.HeaderDeadLetterReason, "test: mongodb was down")
	m.Header.Set(chat.HeaderOriginalSubject, "chat.messages."+room)
	ack, err := e.js.PublishMsg(t.Context(), m)
	if err != nil {
		t.Fatalf("publish dead letter: %v", err)
	}
	row := fmt.Sprintf(`#deadletters tr[data-seq="%d"]`, ack.Sequence)
	tb.poll(`document.querySelector('` + row + ` td:nth-child(4)')?.textContent === 'chat.messages.` + room + `'`)

	tb.do(chromedp.Click(chromedp.CSS(row + ` button.requeue`)))
	tb.poll(`document.getElementById('dl-status').textContent.startsWith('Requeued ` +
		strconv.FormatUint(ack.Sequence, 10) + ` to chat.messages.` + room + `')`)
	tb.poll(`document.querySelector('` + row + `') === null`)
	mu.Lock()
	got := slices.Clone(dialogs)
	mu.Unlock()
	wantDialog := fmt.Sprintf("Requeue dead letter %d: publish its original bytes to chat.messages.%s again?", ack.Sequence, room)
	if len(got) != 1 || got[0] != wantDialog {
		t.Fatalf("dialogs %q, want once %q", got, wantDialog)
	}
	chattest.Eventually(t, 15*time.Second, func() bool {
		status, body, err := get(e.topo.URL + "/rooms/" + room + "/messages")
		var msgs []struct{ Name, Message string }
		if err != nil || status != 200 || json.Unmarshal([]byte(body), &msgs) != nil {
			return false
		}
		return len(msgs) == 1 && msgs[0].Name == "Ann" && msgs[0].Message == text
	}, "the requeued message is not in the room's history")
	tb.checkNoExceptions()
}

// adminTab is a tab of headless Chromium on the admin page.
type adminTab struct {
	t   *testing.T
	ctx context.Context

	mu         sync.Mutex
	exceptions []string
}

// newAdminTab starts headless Chromium (closed at the test's end). Without Chromium it
// skips, or fails when CI is set.
func newAdminTab(t *testing.T) *adminTab {
	t.Helper()
	allocCtx := browsertest.Allocator(t, 2*time.Minute, 1400, 900)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	tb := &adminTab{t: t, ctx: tabCtx}
	if err := chromedp.Do(tabCtx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	exceptions := chromedp.Events(tabCtx, runtime.ExceptionThrown)
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			desc := ev.ExceptionDetails.Text
			if d := ev.ExceptionDetails.Exception; d != nil {
				desc += " " + d.Description
			}
			tb.mu.Lock()
			tb.exceptions = append(tb.exceptions, desc)
			tb.mu.Unlock()
		}
	}()
	return tb
}

func (tb *adminTab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		tb.t.Fatalf("admin page: %v\n%s", err, tb.dump())
	}
}

// poll waits until the JavaScript expression is truthy.
func (tb *adminTab) poll(expr string) {
	tb.t.Helper()
	_, err := browsertest.Run(tb.ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(100*time.Millisecond),
		chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		tb.t.Fatalf("admin page: waiting for %s: %v\n%s", expr, err, tb.dump())
	}
}

func (tb *adminTab) checkNoExceptions() {
	tb.t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.exceptions) > 0 {
		tb.t.Fatalf("admin page: uncaught JavaScript exceptions: %q", tb.exceptions)
	}
}

// dump describes the page for a failure message.
func (tb *adminTab) dump() string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(tb.ctx), 3*time.Second)
	defer cancel()
	s, err := browsertest.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		url: location.href,
		status: document.getElementById('status')?.textContent,
		nodes: [...document.querySelectorAll('#nodes tbody tr')].map((r) => [...r.cells].slice(0, 6).map((c) => c.textContent).join(' | ')),
		deadletters: [...document.querySelectorAll('#deadletters tbody tr')].map((r) => r.textContent),
		dl_status: document.getElementById('dl-status')?.textContent,
	})`))
	if err != nil {
		return "page state unavailable: " + err.Error()
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return "page state: " + s + "\nexceptions: " + strings.Join(tb.exceptions, "; ")
}
