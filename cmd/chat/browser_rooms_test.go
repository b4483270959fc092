package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/browsertest"
	"github.com/chatrt/chat/harness/chattest"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Browser tests of issue 12: the room sidebar with unread badges and the phone layout.

// badgeOf is the unread badge the sidebar shows for room ("" when none), as the user sees it.
func (tb *tab) badgeOf(room string) string {
	tb.t.Helper()
	return tb.eval(`(() => { const b = document.querySelector('#room-list li[data-room=` + jsString(room) + `] .badge');
		return b && b.checkVisibility() ? b.textContent : ''; })()`)
}

// waitBadge waits until the sidebar shows want as room's unread badge ("" for none).
func (tb *tab) waitBadge(room, want string) {
	tb.t.Helper()
	tb.poll(`(() => { const b = document.querySelector('#room-list li[data-room=` + jsString(room) + `] .badge');
		return b !== null && (b.checkVisibility() ? b.textContent : '') === ` + jsString(want) + `; })()`)
}

// sidebarRooms lists the sidebar's rooms, "*" marking the current one.
func (tb *tab) sidebarRooms() string {
	tb.t.Helper()
	return tb.eval(`[...document.querySelectorAll('#room-list li')].map((li) =>
		li.dataset.room + (li.querySelector('.room').getAttribute('aria-current') === 'page' ? '*' : '')).join(' ')`)
}

// apiPost posts through the HTTP API and returns the message's id and edit key.
func apiPost(t *testing.T, base, room, name, text string) (id, editKey string) {
	t.Helper()
	code, m := postJSON(t, base+"/rooms/"+room+"/messages", map[string]string{"name": name, "message": text})
	if code != http.StatusCreated {
		t.Fatalf("post to %s: %d %v", room, code, m)
	}
	id, _ = m["id"].(string)
	editKey, _ = m["edit_key"].(string)
	return id, editKey
}

// apiChange sends a change (PATCH, DELETE or POST .../reactions) with the edit key.
func apiChange(t *testing.T, method, url, editKey, body string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Edit-Key", editKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusCreated {
		t.Fatalf("%s %s: %s", method, url, res.Status)
	}
}

// TestBrowserRoomsUnread: rooms are created and joined by name from the sidebar (with the
// keyboard) and kept by the browser; a post in a room other than the one shown raises its
// badge, whether it comes from another browser's page or from the API; a deletion lowers it,
// an edit or a reaction does not; a reload (and a post while the page was closed) keeps the
// count right; opening the room clears it for good.
func TestBrowserRoomsUnread(t *testing.T) {
	allocCtx := newBrowser(t)
	base := startSystem(t)
	a := newTab(t, allocCtx, "A")
	b := newTab(t, a.ctx, "B", chromedp.WithNewBrowserContext())

	b.do(chromedp.Navigate(base + "/#main"))
	b.waitLive()
	b.poll(`!document.getElementById('empty').hidden`)
	// Create/join a room by name: type it and press Enter.
	b.eval(`document.getElementById('room-input').value = ''`)
	b.do(chromedp.SendKeys(chromedp.ID("room-input"), "side\r"))
	b.poll(`location.hash === '#side' && document.getElementById('room-title').textContent === '#side' && !document.getElementById('empty').hidden`)
	if got := b.sidebarRooms(); got != "main side*" {
		t.Fatalf("sidebar %q, want main side*", got)
	}
	// A bad name is refused (the field says why), the room stays.
	b.eval(`document.getElementById('room-input').value = ''`)
	b.do(chromedp.SendKeys(chromedp.ID("room-input"), "no spaces\r"))
	if got := b.eval(`document.getElementById('room-input').validity.patternMismatch + ' ' + location.hash`); got != "true #side" {
		t.Fatalf("after a bad room name: pattern mismatch, hash = %q; want true #side", got)
	}
	// Back to main with the keyboard: focus its sidebar button and press Enter.
	b.do(chromedp.Focus(chromedp.CSS(`#room-list li[data-room="main"] button.room`)), chromedp.KeyEvent(kb.Enter))
	b.poll(`location.hash === '#main' && document.getElementById('error').hidden`)
	b.waitBadge("side", "")

	// Posts in side raise its badge; a deletion lowers it, an edit and a reaction do not (the
	// post after them is the barrier: frames of a room come in order).
	id1, key1 := apiPost(t, base, "side", "Ann", "one")
	id2, key2 := apiPost(t, base, "side", "Ann", "two")
	b.waitBadge("side", "2")
	b.poll(`document.title === '(2) #main · Chat'`)
	apiChange(t, "DELETE", base+"/rooms/side/messages/"+id1, key1, "")
	b.waitBadge("side", "1")
	apiChange(t, "PATCH", base+"/rooms/side/messages/"+id2, key2, `{"message":"two, edited"}`)
	apiChange(t, "POST", base+"/rooms/side/messages/"+id2+"/reactions", "", `{"emoji":"👍","name":"Ann"}`)
	apiPost(t, base, "side", "Ann", "three")
	b.waitBadge("side", "2")

	// A post from another browser's page counts the same.
	a.do(chromedp.Navigate(base + "/#side"))
	a.waitLive()
	a.waitTexts("two, edited", "three")
	a.send(chromedp.SendKeys(chromedp.ID("name"), "Alice"), chromedp.SendKeys(chromedp.ID("message"), "from A\r"))
	b.waitBadge("side", "3")
	b.waitBadge("main", "")

	// A reload counts again from the last seen seq: the same three.
	b.do(chromedp.Reload())
	b.waitLive()
	b.waitBadge("side", "3")
	// Closed while a post came: counted on the next visit.
	b.do(chromedp.Navigate("about:blank"))
	apiPost(t, base, "side", "Ann", "while B was away")
	b.do(chromedp.Navigate(base + "/#main"))
	b.waitLive()
	b.waitBadge("side", "4")
	if got := b.sidebarRooms(); got != "main* side" {
		t.Fatalf("sidebar after the reload %q, want main* side", got)
	}

	// Opening side shows them and clears the badge, also after a reload and back in main.
	b.do(chromedp.Click(chromedp.CSS(`#room-list li[data-room="side"] button.room`)))
	b.waitTexts("two, edited", "three", "from A", "while B was away")
	b.waitBadge("side", "")
	b.do(chromedp.Reload())
	b.waitLive()
	b.waitTexts("two, edited", "three", "from A", "while B was away")
	b.do(chromedp.Click(chromedp.CSS(`#room-list li[data-room="main"] button.room`)))
	b.poll(`location.hash === '#main' && !document.getElementById('empty').hidden`)
	apiPost(t, base, "side", "Ann", "after")
	b.waitBadge("side", "1")
	if got := b.eval(`document.title`); got != "(1) #main · Chat" {
		t.Fatalf("title %q, want (1) #main · Chat", got)
	}
	// Leaving a room (its × button) drops it from the sidebar and the next visit.
	b.do(chromedp.Click(chromedp.CSS(`#room-list li[data-room="side"] button.leave`)))
	b.do(chromedp.Reload())
	b.waitLive()
	if got := b.sidebarRooms(); got != "main*" {
		t.Fatalf("sidebar after leaving side %q, want main*", got)
	}
	for _, tab := range []*tab{a, b} {
		tab.checkNoExceptions()
	}
}

// phoneLayout checks the page at the current (phone) size: the page itself does not scroll,
// the newest message is in view inside the message list, and the composer (message box and
// Send) is in view below it. It returns "" or what is wrong.
const phoneLayout = `(() => {
	const vw = innerWidth, vh = innerHeight, bad = [];
	const rect = (sel) => document.querySelector(sel).getBoundingClientRect();
	const se = document.scrollingElement;
	if (se.scrollHeight > vh || se.scrollWidth > vw) bad.push('the page scrolls: ' + se.scrollWidth + 'x' + se.scrollHeight);
	const sc = rect('#scroller'), last = rect('#messages li:last-child'), box = rect('#message'), send = rect('#send');
	if (last.top < sc.top - 1 || last.bottom > sc.bottom + 1) bad.push('newest message ' + last.top + '-' + last.bottom + ' outside the list ' + sc.top + '-' + sc.bottom);
	for (const [name, r] of [['message box', box], ['send', send], ['list', sc]]) {
		if (r.top < 0 || r.bottom > vh || r.left < 0 || r.right > vw) bad.push(name + ' outside the viewport: ' + JSON.stringify(r));
	}
	if (box.top < sc.bottom - 1) bad.push('the composer is not below the list');
	if (box.width < 200 || box.height < 30) bad.push('message box too small: ' + box.width + 'x' + box.height);
	if (sc.height < vh / 2) bad.push('the message list gets ' + sc.height + ' of ' + vh + ' px');
	return bad.join('; ');
})()`

// TestBrowserPhoneLayout: at 390×844 the page is a chat: the message list fills the screen
// with the newest message in view and the composer at the bottom, without scrolling the page,
// also after sending and receiving; the sidebar folds away behind a button that opens it
// (keyboard too: Escape folds it back) and a room picked there closes it.
func TestBrowserPhoneLayout(t *testing.T) {
	allocCtx := newBrowser(t)
	base := startSystem(t)
	const room = "phone"
	var want []string
	for i := 1; i <= 30; i++ {
		text := "message " + string(rune('A'+i%26)) + strings.Repeat(" words", i%7)
		if i%5 == 0 {
			text += "\nwith a second line"
		}
		apiPost(t, base, room, "Bob", text)
		want = append(want, text)
	}
	p := newTab(t, allocCtx, "phone")
	p.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch))
	p.do(chromedp.Navigate(base + "/#" + room))
	p.waitLive()
	p.waitTexts(want...)
	p.poll(`innerWidth === 390 && innerHeight === 844`)
	check := func(when string) {
		t.Helper()
		if got := p.eval(phoneLayout); got != "" {
			t.Fatalf("at 390x844, %s: %s\n%s", when, got, p.dump())
		}
	}
	check("after opening the room")
	if got := p.eval(`document.getElementById('sidebar').checkVisibility({visibilityProperty: true}) + ' ' +
		document.getElementById('rooms-toggle').checkVisibility()`); got != "false true" {
		t.Fatalf("sidebar visible, toggle visible = %s; want the sidebar folded behind the toggle", got)
	}

	// Send from the phone with the keyboard, then receive: the newest stays in view.
	p.send(chromedp.SendKeys(chromedp.ID("name"), "Pat"), chromedp.SendKeys(chromedp.ID("message"), "from the phone\r"))
	want = append(want, "from the phone")
	p.waitTexts(want...)
	check("after sending")
	apiPost(t, base, room, "Bob", "a reply\nover\nseveral\nlines")
	want = append(want, "a reply\nover\nseveral\nlines")
	p.waitTexts(want...)
	p.poll(`(() => { const s = document.getElementById('scroller'); return s.scrollHeight - s.scrollTop - s.clientHeight < 2; })()`)
	check("after receiving")

	// The sidebar opens from its button and folds back with Escape, focus returning.
	p.do(chromedp.Click(chromedp.ID("rooms-toggle")))
	p.poll(`document.getElementById('sidebar').checkVisibility({visibilityProperty: true}) &&
		document.getElementById('sidebar').contains(document.activeElement) &&
		document.getElementById('rooms-toggle').getAttribute('aria-expanded') === 'true'`)
	p.do(chromedp.KeyEvent(kb.Escape))
	p.poll(`!document.body.classList.contains('sidebar-open') && document.activeElement.id === 'rooms-toggle'`)
	// Joining a room from it folds it and shows the room.
	p.do(chromedp.Click(chromedp.ID("rooms-toggle")))
	p.poll(`document.getElementById('sidebar').checkVisibility({visibilityProperty: true})`)
	p.eval(`document.getElementById('room-input').value = ''`)
	p.do(chromedp.SendKeys(chromedp.ID("room-input"), "elsewhere\r"))
	p.poll(`location.hash === '#elsewhere' && !document.body.classList.contains('sidebar-open') && !document.getElementById('empty').hidden`)
	if path := os.Getenv("CHAT_UI_SCREENSHOT_PHONE"); path != "" {
		p.do(chromedp.Navigate(base + "/#" + room))
		p.waitTexts(want...)
		png, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.checkNoExceptions()
}

// openTab opens a tab like newTab and also returns the function that closes it.
func openTab(t *testing.T, parent context.Context, name string, opts ...chromedp.ContextOption) (*tab, context.CancelFunc) {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent, opts...)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("tab %s: start: %v", name, err)
	}
	return &tab{t: t, name: name, ctx: ctx}, cancel
}

// presenceShown is the presence the page shows: "<online> online: <name>[×<connections>] ...
// + <anonymous> anonymous" (from the list, whether or not it is open).
const presenceShown = `(() => {
	const box = document.getElementById('presence');
	if (box.hidden) return 'none';
	const members = [...document.querySelectorAll('#presence-list li')].map((li) =>
		li.dataset.name + (li.dataset.connections === '1' ? '' : '×' + li.dataset.connections));
	const summary = document.getElementById('presence-summary').textContent;
	return summary.split(':')[0] + ': ' + members.join(' ') + ' + ' + (document.getElementById('presence-anon').dataset.count || '0') + ' anonymous';
})()`

// waitPresence waits until the page shows want (see presenceShown).
func (tb *tab) waitPresence(want string) {
	tb.t.Helper()
	_, err := browsertest.Run(tb.ctx, chromedp.Poll[chromedp.Void](presenceShown+` === `+jsString(want),
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		tb.t.Fatalf("tab %s: presence shows %q, want %q: %v", tb.name, tb.eval(presenceShown), want, err)
	}
}

// typingShown is the typing line's text.
func (tb *tab) typingShown() string {
	tb.t.Helper()
	return tb.eval(`document.getElementById('typing').textContent`)
}

// TestBrowserPresenceTyping: two browsers in a room see each other online by name, with
// connection counts (a second tab) and anonymous ones (a page without a name); B sees "Ann is
// typing…" while A types, gone when Ann's message arrives or after about 5 s; closing A's tabs
// removes Ann. The sidebar offers the rooms the server lists (GET /rooms), and picking one
// joins it.
func TestBrowserPresenceTyping(t *testing.T) {
	allocCtx := newBrowser(t)
	base := startSystem(t)
	const room = "lobby"
	b := newTab(t, allocCtx, "B")
	a, closeA := openTab(t, b.ctx, "A", chromedp.WithNewBrowserContext())

	// B names itself with the keyboard (Tab commits the name).
	b.do(chromedp.Navigate(base + "/#" + room))
	b.waitLive()
	b.do(chromedp.SendKeys(chromedp.ID("name"), "Ben\t"))
	b.waitPresence("1 online: Ben + 0 anonymous")
	a.do(chromedp.Navigate(base + "/#" + room))
	a.waitLive()
	b.waitPresence("2 online: Ben + 1 anonymous") // A has no name yet
	a.do(chromedp.SendKeys(chromedp.ID("name"), "Ann\t"))
	b.waitPresence("2 online: Ann Ben + 0 anonymous")
	a.waitPresence("2 online: Ann Ben + 0 anonymous")

	// A second tab of A's browser (same name) counts as a second connection of Ann's.
	a2, closeA2 := openTab(t, a.ctx, "A2")
	a2.do(chromedp.Navigate(base + "/#" + room))
	a2.waitLive()
	b.waitPresence("3 online: Ann×2 Ben + 0 anonymous")
	closeA2()
	b.waitPresence("2 online: Ann Ben + 0 anonymous")

	// A types: B sees it; Ann's message clears it at once.
	a.do(chromedp.SendKeys(chromedp.ID("message"), "hel"))
	b.poll(`document.getElementById('typing').textContent === 'Ann is typing…'`)
	shown := time.Now()
	if got := a.typingShown(); got != "" {
		t.Fatalf("A sees its own typing: %q", got)
	}
	a.send(chromedp.SendKeys(chromedp.ID("message"), "lo\r"))
	b.waitTexts("hello")
	if got, since := b.typingShown(), time.Since(shown); got != "" && since < 5*time.Second {
		t.Fatalf("B still shows %q when Ann's message arrived (%v after it showed)", got, since)
	}
	// Typing without sending shows for about 5 s. (chat.js sends at most one typing frame
	// per 2 s per room: typing() says whether it sent one.)
	a.poll(`chatApp.client.typing(` + jsString(room) + `)`)
	b.poll(`document.getElementById('typing').textContent === 'Ann is typing…'`)
	shown = time.Now()
	b.poll(`document.getElementById('typing').textContent === ''`)
	if d := time.Since(shown); d < 4*time.Second || d > 10*time.Second {
		t.Fatalf("typing shown for %v, want about 5 s", d)
	}

	// Closing A (its last tab) removes Ann.
	closeA()
	b.waitPresence("1 online: Ben + 0 anonymous")

	// Rooms the server lists are offered; picking one joins it.
	apiPost(t, base, "busy-room", "Cy", "anyone?")
	chattest.Eventually(t, 10*time.Second, func() bool {
		res, err := http.Get(base + "/rooms")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return strings.Contains(string(body), `"busy-room"`)
	}, "busy-room in GET /rooms")
	b.do(chromedp.Reload())
	b.waitLive()
	b.poll(`[...document.querySelectorAll('#discover-list button')].some((x) => x.dataset.room === 'busy-room')`)
	b.do(chromedp.Focus(chromedp.CSS(`#discover-list button[data-room="busy-room"]`)), chromedp.KeyEvent(kb.Enter))
	b.waitTexts("anyone?")
	if got := b.sidebarRooms(); got != "busy-room* lobby" {
		t.Fatalf("sidebar %q, want busy-room* lobby", got)
	}
	b.poll(`![...document.querySelectorAll('#discover-list button')].some((x) => x.dataset.room === 'busy-room')`)
	b.checkNoExceptions()
}
