package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatrt/chat/harness/browsertest"
	"github.com/chatrt/chat/harness/chattest"
	"github.com/chatrt/chat/pkg/auth"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Browser tests of issue 11: editing, deleting and reacting in the UI.

// msgSummary describes message id as the page shows it:
//
//	<text>[ (edited)] [<emoji> <count>[*], ...] {<actions>}
//
// with * on a reaction shown as yours; a tombstone is <deleted:<tombstone text>:<name>>;
// the actions are what the message's action bar shows (its buttons, and the question of a
// delete confirmation), space-separated. The marker and the reactions count only when the
// browser renders them (checkVisibility: a hidden attribute that CSS overrides is shown).
// "missing" when the page does not show the message.
const msgSummary = `(id) => {
	const li = document.querySelector('#messages li[data-id="' + id + '"]');
	if (!li) return 'missing';
	let s;
	if (li.classList.contains('deleted')) {
		const t = li.querySelector('.tombstone');
		s = '<deleted:' + (t ? t.textContent : '') + ':' + li.querySelector('.name').textContent + '>';
	} else {
		const t = li.querySelector('.text');
		s = (t ? t.textContent : '<no text>') + (li.querySelector('.edited').checkVisibility() ? ' (edited)' : '');
	}
	const r = li.querySelector('.reactions');
	const chips = !r.checkVisibility() ? [] : [...r.querySelectorAll('button.reaction')].map((b) =>
		b.textContent + (b.getAttribute('aria-pressed') === 'true' ? '*' : ''));
	const actions = [...li.querySelectorAll('.msg-actions > *')].map((e) => e.textContent);
	return s + ' [' + chips.join(', ') + '] {' + actions.join(' ') + '}';
}`

// waitMsg waits until the page shows message id as want (see msgSummary).
func (tb *tab) waitMsg(id, want string) {
	tb.t.Helper()
	_, err := browsertest.Run(tb.ctx, chromedp.PollFunction[chromedp.Void](
		`(id, want) => (`+msgSummary+`)(id) === want`,
		chromedp.WithPollingArgs(id, want),
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		got, _ := browsertest.Run(tb.ctx, chromedp.Evaluate[string](`(`+msgSummary+`)(`+jsString(id)+`)`))
		tb.t.Fatalf("tab %s: message %s shows %q, want %q: %v\n%s", tb.name, id, got, want, err, tb.dump())
	}
}

// msgSel is the CSS selector of sel inside the list item of message id.
func msgSel(id, sel string) chromedp.CSS {
	return chromedp.CSS(`#messages li[data-id="` + id + `"] ` + sel)
}

// shownError is the error the page shows, "" when none.
func (tb *tab) shownError() string {
	tb.t.Helper()
	return tb.eval(`document.getElementById('error').hidden ? '' : document.getElementById('error').textContent`)
}

// historyOf reads GET /rooms/{room}/messages as generic objects.
func historyOf(t *testing.T, base, room string) []map[string]any {
	t.Helper()
	res, err := http.Get(base + "/rooms/" + room + "/messages?limit=200")
	if err != nil {
		t.Fatalf("history of %s: %v", room, err)
	}
	defer res.Body.Close()
	var msgs []map[string]any
	if err := json.NewDecoder(res.Body).Decode(&msgs); err != nil {
		t.Fatalf("history of %s: %s: %v", room, res.Status, err)
	}
	return msgs
}

// TestBrowserChanges drives edits, deletes and reactions through the UI in two browsers
// that share nothing (separate browser contexts: B holds none of A's edit keys): what A
// does shows in B live, B cannot change A's messages (no controls, and requests without the
// edit key are refused), a B that was away catches up, and a reload of either shows the
// same state as history.
func TestBrowserChanges(t *testing.T) {
	allocCtx := newBrowser(t)
	base := startSystem(t)
	a := newTab(t, allocCtx, "A")
	b := newTab(t, a.ctx, "B", chromedp.WithNewBrowserContext())

	const room = "browser-changes"
	for _, tab := range []*tab{a, b} {
		tab.do(chromedp.Navigate(base + "/#" + room))
		tab.waitLive()
		tab.poll(`!document.getElementById('empty').hidden`)
	}
	a.send(chromedp.SendKeys(chromedp.ID("name"), "Alice"), chromedp.SendKeys(chromedp.ID("message"), "first\r"))
	a.send(chromedp.SendKeys(chromedp.ID("message"), "second\r"))
	for _, tab := range []*tab{a, b} {
		tab.waitTexts("first", "second")
	}
	first := a.eval(`document.querySelectorAll('#messages li')[0].dataset.id`)
	second := a.eval(`document.querySelectorAll('#messages li')[1].dataset.id`)
	if got := b.eval(`[...document.querySelectorAll('#messages li')].map((li) => li.dataset.id).join(' ')`); got != first+" "+second {
		t.Fatalf("tab B shows ids %q, want %q", got, first+" "+second)
	}
	// A posted them here: Edit and Delete. B did not: neither.
	a.waitMsg(first, "first [] {Edit Delete}")
	b.waitMsg(first, "first [] {}")
	b.waitMsg(second, "second [] {}")

	// Edit in A: Enter saves; B shows the new text, marked edited.
	a.do(chromedp.Click(msgSel(first, "button.edit")))
	a.poll(`document.activeElement.classList.contains('edit-box') && document.activeElement.value === 'first'`)
	a.eval(`document.activeElement.select(), ''`)
	a.do(chromedp.SendKeys(msgSel(first, ".edit-box"), "first, edited\r"))
	a.waitMsg(first, "first, edited (edited) [] {Edit Delete}")
	b.waitMsg(first, "first, edited (edited) [] {}")

	// Escape cancels an edit: nothing sent, the text as it was, focus back on Edit.
	a.do(chromedp.Click(msgSel(second, "button.edit")))
	a.do(chromedp.SendKeys(msgSel(second, ".edit-box"), " and more"), chromedp.KeyEvent(kb.Escape))
	a.waitMsg(second, "second [] {Edit Delete}")
	if got := a.eval(`document.querySelectorAll('.edit-box').length + ' ' + document.activeElement.textContent`); got != "0 Edit" {
		t.Fatalf("after Escape: %q, want no editor and the focus on Edit", got)
	}

	// A reacts with 🎉 from the picker; B sees the count.
	a.do(chromedp.Click(msgSel(second, "button.add-reaction")), chromedp.Click(msgSel(second, `.picker button[data-emoji="🎉"]`)))
	a.waitMsg(second, "second [🎉 1*] {Edit Delete}")
	b.waitMsg(second, "second [🎉 1] {}")

	// B (by keyboard) adds its own 🎉: 2 in both, pressed where it is one's own.
	b.do(chromedp.SendKeys(chromedp.ID("name"), "Bob"), chromedp.Focus(msgSel(second, "button.reaction")), chromedp.KeyEvent("\r"))
	b.waitMsg(second, "second [🎉 2*] {}")
	a.waitMsg(second, "second [🎉 2*] {Edit Delete}")

	// A takes its reaction back.
	a.do(chromedp.Click(msgSel(second, "button.reaction")))
	a.waitMsg(second, "second [🎉 1] {Edit Delete}")
	b.waitMsg(second, "second [🎉 1*] {}")

	// Delete in A, confirmed: a tombstone in both, name and text gone.
	a.do(chromedp.Click(msgSel(first, "button.delete")))
	a.waitMsg(first, "first, edited (edited) [] {Delete this message? Delete Cancel}")
	a.do(chromedp.Click(msgSel(first, "button.confirm-delete")))
	a.waitMsg(first, "<deleted:message deleted:> [] {}")
	b.waitMsg(first, "<deleted:message deleted:> [] {}")
	b.waitTexts("second")

	// B cannot change A's message: it holds no edit key, and the api refuses a PATCH or a
	// DELETE without one, or with a made-up one.
	if got := b.eval(`chatApp.client.editKey(` + jsString(room) + `, ` + jsString(second) + `)`); got != "null" {
		t.Fatalf("tab B holds an edit key for A's message: %s", got)
	}
	forge := func(method, body string, headers map[string]string) string {
		h, _ := json.Marshal(headers)
		return b.await(`fetch('/rooms/` + room + `/messages/` + second + `', {method: '` + method + `', headers: ` + string(h) +
			`, body: ` + body + `}).then((r) => r.status)`)
	}
	if got := forge("PATCH", `JSON.stringify({message: 'forged'})`, map[string]string{"Content-Type": "application/json"}); got != "403" {
		t.Fatalf("PATCH without an edit key: %s, want 403", got)
	}
	if got := forge("PATCH", `JSON.stringify({message: 'forged'})`, map[string]string{"Content-Type": "application/json", "Edit-Key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}); got != "403" {
		t.Fatalf("PATCH with a made-up edit key: %s, want 403", got)
	}
	if got := forge("DELETE", `undefined`, map[string]string{}); got != "403" {
		t.Fatalf("DELETE without an edit key: %s, want 403", got)
	}
	if got := b.await(`chatApp.client.edit(` + jsString(room) + `, ` + jsString(second) + `, 'forged').then(() => 'edited', (e) => e.name + ' ' + e.status)`); got != "ChatError 403" {
		t.Fatalf("client.edit of A's message from B: %s, want ChatError 403", got)
	}

	// B away, A edits and reacts: B catches up on reconnecting (the changes resume with since).
	b.eval(`chatApp.client.disconnect(), ''`)
	b.poll(`document.getElementById('state').textContent === 'offline'`)
	a.do(chromedp.Click(msgSel(second, "button.edit")))
	a.eval(`document.activeElement.select(), ''`)
	a.do(chromedp.SendKeys(msgSel(second, ".edit-box"), "second, edited"), chromedp.Click(msgSel(second, "button.save-edit")))
	// Saved: the message's buttons are disabled while its change is under way.
	a.waitMsg(second, "second, edited (edited) [🎉 1] {Edit Delete}")
	a.do(chromedp.Click(msgSel(second, "button.add-reaction")), chromedp.Click(msgSel(second, `.picker button[data-emoji="👍"]`)))
	a.waitMsg(second, "second, edited (edited) [👍 1*, 🎉 1] {Edit Delete}")
	b.waitMsg(second, "second [🎉 1*] {}")
	b.eval(`chatApp.client.connect(), ''`)
	b.waitLive()
	b.waitMsg(second, "second, edited (edited) [👍 1, 🎉 1*] {}")

	// History holds the same state, and a reload of either tab shows it.
	chattest.Eventually(t, 10*time.Second, func() bool {
		h := historyOf(t, base, room)
		if len(h) != 2 {
			return false
		}
		r, _ := json.Marshal(h[1]["reactions"]) // a map: its keys come out sorted
		return h[0]["deleted"] == true && h[0]["name"] == "" && h[0]["message"] == "" && h[0]["edited_at"] == nil &&
			h[1]["message"] == "second, edited" && h[1]["edited_at"] != nil && string(r) == `{"🎉":1,"👍":1}`
	}, "history shows the tombstone and the edited message with its reactions")
	b.do(chromedp.Reload())
	b.waitLive()
	b.waitMsg(first, "<deleted:message deleted:> [] {}")
	b.waitMsg(second, "second, edited (edited) [👍 1, 🎉 1*] {}")
	a.do(chromedp.Reload())
	a.waitLive()
	a.waitMsg(first, "<deleted:message deleted:> [] {}")
	a.waitMsg(second, "second, edited (edited) [👍 1*, 🎉 1] {Edit Delete}") // the edit key outlives the reload

	for _, tab := range []*tab{a, b} {
		if got := tab.shownError(); got != "" {
			t.Fatalf("tab %s: error shown: %q", tab.name, got)
		}
		tab.checkNoExceptions()
	}
}

// TestBrowserChangesWithAuth: with auth on, the page offers Edit and Delete on the messages
// it posted (the server knows their author), reacts as the token's person without a name,
// and shows the server's 403 when another person's token tries to edit.
func TestBrowserChangesWithAuth(t *testing.T) {
	allocCtx := newBrowser(t)
	const secret = "browser-changes-secret-browser-changes"
	cfg := testConfig(t)
	cfg.API.HS256Secret, cfg.Pusher.HS256Secret = secret, secret
	sys := startSystemWith(t, cfg)
	sign := func(sub, name string) string {
		tok, err := auth.Sign([]byte(secret), map[string]any{"sub": sub, "name": name, "rooms": "*",
			"exp": time.Now().Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ann, bob := sign("ann", "Ann"), sign("bob", "Bob")

	const room = "team-changes"
	a := newTab(t, allocCtx, "A")
	a.do(chromedp.Navigate(sys.url + "/?token=" + ann + "#" + room))
	a.waitLive()
	a.poll(`!document.getElementById('empty').hidden`)
	// No name asked: the field shows the token's, which the server takes.
	if got := a.eval(`document.getElementById('name').value + ' ' + document.getElementById('name').readOnly`); got != "Ann true" {
		t.Fatalf("name field %q, want the token's name, read-only", got)
	}
	a.send(chromedp.SendKeys(chromedp.ID("message"), "mine\r"))
	postWithToken(t, sys.url, room, bob, "bob's")
	a.waitTexts("mine", "bob's")
	mine := a.eval(`document.querySelectorAll('#messages li')[0].dataset.id`)
	bobs := a.eval(`document.querySelectorAll('#messages li')[1].dataset.id`)
	a.waitMsg(mine, "mine [] {Edit Delete}")
	a.waitMsg(bobs, "bob's [] {}")
	if got := a.eval(`document.querySelector('#messages li[data-id="` + mine + `"] .name').textContent`); got != "Ann" {
		t.Fatalf("own message by %q, want Ann", got)
	}

	// Edit one's own; react (no name asked: the token says who).
	a.do(chromedp.Click(msgSel(mine, "button.edit")))
	a.eval(`document.activeElement.select(), ''`)
	a.do(chromedp.SendKeys(msgSel(mine, ".edit-box"), "mine, edited\r"))
	a.waitMsg(mine, "mine, edited (edited) [] {Edit Delete}")
	a.do(chromedp.Click(msgSel(bobs, "button.add-reaction")), chromedp.Click(msgSel(bobs, `.picker button[data-emoji="😂"]`)))
	a.waitMsg(bobs, "bob's [😂 1*] {}")

	// The same browser signed in as Bob: it still offers Edit on the message it posted, the
	// server refuses (Bob is not its author) and the page says so.
	a.do(chromedp.Navigate(sys.url + "/?token=" + bob + "#" + room))
	a.waitLive()
	a.waitMsg(mine, "mine, edited (edited) [] {Edit Delete}")
	a.waitMsg(bobs, "bob's [😂 1] {}") // Ann's reaction, not Bob's
	a.do(chromedp.Click(msgSel(mine, "button.edit")))
	a.eval(`document.activeElement.select(), ''`)
	a.do(chromedp.SendKeys(msgSel(mine, ".edit-box"), "Bob was here\r"))
	a.poll(`!document.getElementById('error').hidden`)
	if got := a.shownError(); !strings.HasPrefix(got, "Not saved: not allowed: ") {
		t.Fatalf("error shown %q, want the 403 (not allowed)", got)
	}
	a.do(chromedp.KeyEvent(kb.Escape))
	a.waitMsg(mine, "mine, edited (edited) [] {Edit Delete}")
	a.checkNoExceptions()
}

// stateScript defines, in a page of startOrigin, norm(list): a list of messages in a
// canonical form (seq order; every field a client sees, reactions' emoji sorted) to compare
// what a client reconstructed with history.
const stateScript = `
window.norm = (list) => JSON.stringify([...list].sort((a, b) => a.seq - b.seq).map((m) => [m.seq, m.id, m.room,
	m.name, m.message, m.sent_at, m.edited_at || null, !!m.deleted,
	Object.keys(m.reactions || {}).sort().map((k) => [k, m.reactions[k]])]));
// follow subscribes a new client (storage: null, no edit keys) since cursor, starting from
// the messages in seed, and returns the map of what it has: seed + messages received,
// changes applied.
window.follow = (cursor, seed) => {
	const msgs = new Map(seed.map((m) => [m.id, m]));
	const c = new ChatClient({ baseURL: cfg.system, url: cfg.ws, storage: null,
		onMessage(m) { msgs.set(m.id, m); },
		onChange(ch) { ChatClient.applyChange(msgs.get(ch.id), ch); } });
	c.subscribe(cfg.room, cursor);
	return { client: c, msgs };
};
`

// TestBrowserClientChanges: chat.js on a page of another origin posts (keeping the edit keys),
// edits, reacts, takes a reaction back and deletes through its methods, and every client
// that applies what it receives with ChatClient.applyChange ends with exactly what history
// shows: the live one, one resuming from a cursor between a message and its edits, one
// resuming from 0. A client without the edit key is refused (403) and edit keys are
// bounded.
func TestBrowserClientChanges(t *testing.T) {
	allocCtx := newBrowser(t)
	page := startOrigin(t)
	cfg := testConfig(t)
	cfg.API.AllowedOrigins = []string{page.origin()}
	cfg.Pusher.AllowedOrigins = []string{page.origin()}
	sys := startSystemWith(t, cfg)

	const room = "client-changes"
	page.setPage(t, pageConfig{System: sys.url, WS: wsURL(sys.url), Room: room, MinDelay: 500, MaxDelay: 2000})
	tb := newTab(t, allocCtx, "page")
	tb.do(chromedp.Navigate(page.origin() + "/"))
	tb.waitLive()
	tb.eval("(() => {" + stateScript + "return ''; })()") // eval takes an expression: the script runs in a function
	call := func(expr string) string {
		t.Helper()
		return tb.await(`(async () => { try { return await (` + expr + `); } catch (e) { return 'error ' + e.status + ' ' + e.error; } })()`)
	}
	r := jsString(room)

	for _, m := range []string{"m1", "m2"} {
		if got := call(`client.post(` + r + `, 'Ann', '` + m + `').then((m) => (window[m.message] = m.id, typeof m.edit_key))`); got != "string" {
			t.Fatalf("post %s: edit_key %s, want a string", m, got)
		}
	}
	if got := tb.eval(`client.postedHere(` + r + `, m1) && client.editKey(` + r + `, m1) !== null`); got != "true" {
		t.Fatal("the client does not remember the edit key of its post")
	}
	// A cursor after m2, before any change: what a page that showed history then would have.
	chattest.Eventually(t, 10*time.Second, func() bool { return historyLen(t, sys.url, room) == 2 }, "m1 and m2 in history")
	tb.await(`client.history(` + r + `).then((l) => { window.snap = l; window.cursor = l[l.length - 1].seq; })`)
	early := tb.eval(`window.early = follow(cursor, snap), cursor`) // resumes now, follows live

	steps := []struct{ expr, want string }{
		{`client.edit(` + r + `, m1, ' m1 v2 ').then((m) => m.message + ' ' + (m.change_seq > m.seq) + ' ' + !!m.edited_at)`, "m1 v2 true true"},
		{`client.react(` + r + `, m2, '👍', 'Ann').then((a) => JSON.stringify(a.reactions))`, `{"👍":1}`},
		{`client.react(` + r + `, m2, '👍', 'Bob').then((a) => JSON.stringify(a.reactions))`, `{"👍":2}`},
		{`client.react(` + r + `, m2, '👍', 'Bob').then((a) => JSON.stringify(a.reactions))`, `{"👍":2}`}, // once per person
		{`client.react(` + r + `, m2, '🎉', 'Ann').then((a) => JSON.stringify(a.reactions))`, `{"🎉":1,"👍":2}`},
		{`client.unreact(` + r + `, m2, '🎉', 'Ann').then((a) => JSON.stringify(a.reactions))`, `{"👍":2}`},
		{`client.react(` + r + `, m1, '😮', 'Cy').then((a) => JSON.stringify(a.reactions))`, `{"😮":1}`},
		{`client.edit(` + r + `, m1, 'm1 v3').then((m) => m.message + ' ' + JSON.stringify(m.reactions))`, `m1 v3 {"😮":1}`},
		{`client.post(` + r + `, 'Ann', 'm3').then((m) => (window.m3 = m.id, 'ok'))`, "ok"},
		{`client.edit(` + r + `, m3, 'm3 v2').then((m) => m.message)`, "m3 v2"},
		{`client.react(` + r + `, m3, '😢', 'Ann').then((a) => JSON.stringify(a.reactions))`, `{"😢":1}`},
		{`client.remove(` + r + `, m3).then((m) => [m.deleted, m.name, m.message, m.edited_at, m.reactions, client.editKey(` + r + `, m3)].join('|'))`, "true|||||"},
		{`client.react(` + r + `, 'nosuchid', '👍', 'Ann')`, "error 404 "},
		{`client.react(` + r + `, m2, '🦄', 'Ann')`, "error 400 "},
		{`follow(0, []).client.edit(` + r + `, m2, 'not mine')`, "error 403 "}, // a client without the key
	}
	for _, s := range steps {
		if got := call(s.expr); got != s.want && !(strings.HasSuffix(s.want, " ") && strings.HasPrefix(got, s.want)) {
			t.Fatalf("%s: %q, want %q", s.expr, got, s.want)
		}
	}
	if got := tb.eval(`client.lastSeq(` + r + `)`); got == early {
		t.Fatal("the changes did not advance the live client's lastSeq")
	}
	tb.eval(`window.late = follow(cursor, snap), window.zero = follow(0, []), ''`)

	// Every client ends with what history shows, once history has it all.
	chattest.Eventually(t, 15*time.Second, func() bool {
		got := tb.await(`client.history(` + r + `).then((h) => {
			const want = norm(h), live = norm(got.values()), l = client.lastSeq(` + r + `);
			return [live, norm(early.msgs.values()), norm(late.msgs.values()), norm(zero.msgs.values())].every((s) => s === want) &&
				[early, late, zero].every((f) => f.client.lastSeq(` + r + `) === l) ? 'same' : want;
		})`)
		return got == "same"
	}, "the live client and the resumed ones reconstruct history")
	// The live client got each kind of change, once each, in seq order.
	if got := tb.eval(`[...new Set(log.changes.map((c) => c.type))].sort().join(' ') + ' ' +
		log.changes.every((c, i) => i === 0 || c.seq > log.changes[i - 1].seq)`); got != "deleted edited reactions true" {
		t.Fatalf("change frames: %s\n%s", got, tb.eval(`JSON.stringify(log.changes)`))
	}

	// Edit keys are bounded: the oldest go.
	got := call(`(async () => { const c = new ChatClient({ baseURL: cfg.system, url: cfg.ws, autoConnect: false, maxEditKeys: 2 });
		const ids = []; for (const t of ['k1', 'k2', 'k3']) ids.push((await c.post('bound', 'Ann', t)).id);
		return ids.map((id) => c.editKey('bound', id) !== null).join(' ') + ' ' + JSON.parse(localStorage.getItem('chat.editKeys')).length; })()`)
	if got != "false true true 2" {
		t.Fatalf("bounded edit keys: %q, want the oldest dropped and 2 kept", got)
	}
	tb.checkNoExceptions()
}
