package viewertest_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/internal/pgtest"
)

const secret = "viewer-browser-test-secret-0123456789"

// env is the API with the viewer, on a real server, store and writer.
type env struct {
	t   testing.TB
	db  *pgtest.DB
	st  *store.Store
	w   *core.Writer
	vt  *ginaudit.ViewerTokens
	url string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	db := pgtest.New(t)
	st, err := store.New(db.Pool, store.Options{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
		core.WriterOptions{FlushInterval: 5 * time.Millisecond})
	v, err := ginaudit.NewVerifier(t.Context(), core.JWTConfig{Secret: secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	vt, err := ginaudit.NewViewerTokens([]byte("viewer-token-key-0123456789abcdef-0123"))
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	if err := ginaudit.MountAPI(r.Group("/api/v1"), st, ginaudit.APIOptions{
		Verifier: v, Writer: w, RateLimit: -1, ViewerTokens: vt, ViewerPath: "/viewer",
		Logger: slog.New(slog.DiscardHandler),
	}); err != nil {
		t.Fatal(err)
	}
	page, err := ginaudit.ViewerIndex("/api/v1", "/viewer")
	if err != nil {
		t.Fatal(err)
	}
	r.GET("/", gin.WrapH(page))
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		st.Close()
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Close(ctx)
	})
	return &env{t: t, db: db, st: st, w: w, vt: vt, url: srv.URL}
}

func (e *env) write(recs ...*core.Record) {
	e.t.Helper()
	for _, r := range recs {
		if err := e.w.Enqueue(r); err != nil {
			e.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.w.Flush(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// streamsOpened returns how many live streams the API has recorded opening (auditlog.stream).
func (e *env) streamsOpened() int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs WHERE action = 'auditlog.stream'`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// waitStreamsOpened waits until the API has recorded opening n live streams: it records a stream
// once the stream is subscribed, so that a record written afterwards reaches it.
func (e *env) waitStreamsOpened(n int) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.streamsOpened() < n {
		if time.Now().After(deadline) {
			e.t.Fatalf("the API recorded %d live streams within 30s, want %d", e.streamsOpened(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func token(t testing.TB, sub string, typ core.ActorType, tenant string) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "actor_type": string(typ), "exp": time.Now().Add(time.Hour).Unix()}
	if tenant != "" {
		c["tenant_id"] = tenant
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// chromium starts a headless browser with a fresh profile; downloads go to dir.
func chromium(t testing.TB, dir string) context.Context {
	t.Helper()
	exe := os.Getenv("AUDITKIT_CHROMIUM")
	if exe == "" {
		exe = "/usr/bin/chromium"
	}
	if _, err := os.Stat(exe); err != nil {
		t.Fatalf("the browser tests need Chromium at %s (apt-get install chromium, or set AUDITKIT_CHROMIUM): %v", exe, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1360, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelC := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelC(); cancelB(); cancelA() })
	events := true
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir, EventsEnabled: &events,
	}); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return ctx
}

// run runs actions, failing the test with what was being done.
func run(t testing.TB, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v (page: %s)", what, err, pageState(ctx))
	}
}

// pageState is the page's status and error lines, for failure messages.
func pageState(ctx context.Context) string {
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.hash + ' | ' + document.querySelector('#status')?.textContent + ' | ' + document.querySelector('#error')?.textContent`))
	return s
}

// until waits for a JavaScript expression to be true.
func until(t testing.TB, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("waiting for %s: %v (page: %s)", what, err, pageState(ctx))
	}
}

func eval[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

func shoot(t testing.TB, ctx context.Context, dir, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if _, err := png.Decode(bytes.NewReader(buf)); err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// hash edits the address after its #, as a person would in the address bar.
func hash(t testing.TB, ctx context.Context, h string) {
	t.Helper()
	eval[string](t, ctx, fmt.Sprintf("location.hash = %q", h))
}

// fill types value into the filter field name.
func fill(t testing.TB, ctx context.Context, name, value string) {
	t.Helper()
	eval[string](t, ctx, fmt.Sprintf(`document.querySelector('#filters [name=%q]').value = %q`, name, value))
}

const rowIDs = `[...document.querySelectorAll('#rows tr')].map(r => r.dataset.id)`

// The viewer, driven as a person would: filter, page, open a record and its changes, a
// request's records, follow live records, export, verify the chain, and do it all by keyboard;
// a tenant's user never sees another tenant's records, even by editing the address.
func TestViewerInBrowser(t *testing.T) {
	e := newEnv(t)
	shots := os.Getenv("AUDITKIT_VIEWER_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	downloads := t.TempDir()

	// Tenant acme: 120 records over the last hours, an update of a customer with a redacted
	// field, and a request with its http record and two records under it. Tenant globex: its
	// own records, which acme must never see.
	base := time.Now().Add(-3 * time.Hour).UTC()
	var recs []*core.Record
	actions := []string{"invoice.paid", "invoice.created", "user.login", "project.archived"}
	for i := range 120 {
		recs = append(recs, &core.Record{Kind: core.KindCustom, Action: actions[i%len(actions)],
			OccurredAt: base.Add(time.Duration(i) * time.Minute), Tenant: core.Tenant{ID: "acme"},
			Actor:        core.Actor{ID: fmt.Sprintf("user-%d", i%7), Type: core.ActorTenantUser, Email: fmt.Sprintf("user%d@acme.test", i%7)},
			ResourceType: "invoice", ResourceID: fmt.Sprintf("inv-%03d", i), Metadata: map[string]any{"n": i}})
	}
	update := &core.Record{Kind: core.KindUpdate, Action: "customer.updated", OccurredAt: base.Add(150 * time.Minute),
		Tenant: core.Tenant{ID: "acme"}, Actor: core.Actor{ID: "user-1", Type: core.ActorTenantUser, Email: "user1@acme.test"},
		ResourceType: "customers", ResourceID: "cus-42", RequestID: "req-checkout-1",
		Before: map[string]any{"name": "Ada", "email": "ada@old.test", "plan": "free", "api_key": core.Redacted},
		After:  map[string]any{"name": "Ada", "email": "ada@new.test", "plan": "pro", "api_key": core.Redacted},
		Diff: map[string]core.Change{"email": {From: "ada@old.test", To: "ada@new.test"}, "plan": {From: "free", To: "pro"},
			"api_key": {From: core.Redacted, To: core.Redacted}}}
	httpRec := &core.Record{Kind: core.KindHTTP, Action: "http.request", OccurredAt: base.Add(150*time.Minute + time.Second),
		Tenant: core.Tenant{ID: "acme"}, Actor: core.Actor{ID: "user-1", Type: core.ActorTenantUser}, RequestID: "req-checkout-1",
		Method: "PATCH", Route: "/customers/:id", Path: "/customers/cus-42", Status: 200, Duration: 12 * time.Millisecond}
	child := &core.Record{Kind: core.KindCustom, Action: "billing.plan_changed", OccurredAt: base.Add(150 * time.Minute),
		Tenant: core.Tenant{ID: "acme"}, RequestID: "req-checkout-1", ResourceType: "subscriptions", ResourceID: "sub-9"}
	created := &core.Record{Kind: core.KindInsert, Action: "customer.created", OccurredAt: base.Add(-time.Hour),
		Tenant: core.Tenant{ID: "acme"}, Actor: core.Actor{ID: "user-2", Type: core.ActorTenantUser}, ResourceType: "customers", ResourceID: "cus-42",
		After: map[string]any{"name": "Ada", "email": "ada@old.test", "plan": "free", "api_key": core.Redacted}}
	recs = append(recs, update, httpRec, child, created)
	for i := range 30 {
		recs = append(recs, &core.Record{Kind: core.KindCustom, Action: "globex.secret", OccurredAt: base.Add(time.Duration(i) * time.Minute),
			Tenant: core.Tenant{ID: "globex"}, Metadata: map[string]any{"mark": "GLOBEXSECRET"}})
	}
	e.write(recs...)
	globexID := recs[len(recs)-1].ID.String()
	const acmeCount = 124

	ctx := chromium(t, downloads)
	user := token(t, "user-1", core.ActorTenantUser, "acme")

	// Sign in through the address; the token leaves it at once.
	run(t, ctx, "opening the viewer", chromedp.Navigate(e.url+"/#token="+user))
	until(t, ctx, "the first page", `document.querySelectorAll('#rows tr').length === 50`)
	if h := eval[string](t, ctx, `location.hash`); strings.Contains(h, "token") {
		t.Fatalf("the token stays in the address: %s", h)
	}
	if txt := eval[string](t, ctx, `document.body.innerText`); strings.Contains(txt, "globex") || strings.Contains(txt, "GLOBEXSECRET") {
		t.Fatal("acme's user sees globex's records")
	}
	shoot(t, ctx, shots, "viewer-list.png")

	// Paging: three pages of 50, 50 and 23, each record once, never more than a page in the list.
	seen := map[string]bool{}
	for page := 1; ; page++ {
		ids := eval[[]string](t, ctx, rowIDs)
		if len(ids) > 50 {
			t.Fatalf("page %d holds %d rows", page, len(ids))
		}
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("record %s shown twice", id)
			}
			seen[id] = true
		}
		if eval[bool](t, ctx, `document.getElementById('next').disabled`) {
			break
		}
		first := ids[0]
		run(t, ctx, "next page", chromedp.Click(chromedp.ID("next")))
		until(t, ctx, "page "+fmt.Sprint(page+1), fmt.Sprintf(`document.getElementById('page-no').textContent === 'Page %d' && document.querySelector('#rows tr')?.dataset.id !== %q`, page+1, first))
	}
	if len(seen) != acmeCount {
		t.Fatalf("paging showed %d records, want %d", len(seen), acmeCount)
	}
	run(t, ctx, "previous page", chromedp.Click(chromedp.ID("prev")))
	until(t, ctx, "page 2 again", `document.getElementById('page-no').textContent === 'Page 2' && document.querySelectorAll('#rows tr').length === 50`)

	// Filters: an action, then a kind and an actor; the address keeps them.
	fill(t, ctx, "action", "invoice.paid")
	run(t, ctx, "filtering by action", chromedp.Click(chromedp.ID("apply")))
	until(t, ctx, "invoice.paid alone", `(() => { const r = [...document.querySelectorAll('#rows tr')]; return r.length === 30 && r.every(x => x.cells[1].textContent === 'invoice.paid'); })()`)
	if h := eval[string](t, ctx, `location.hash`); !strings.Contains(h, "action=invoice.paid") {
		t.Fatalf("the filter is not in the address: %s", h)
	}
	fill(t, ctx, "action", "")
	fill(t, ctx, "actor_id", "user-1")
	run(t, ctx, "filtering by kind and actor",
		chromedp.Click(chromedp.CSS(`#filters input[name="kind"][value="update"]`)),
		chromedp.Click(chromedp.ID("apply")))
	until(t, ctx, "the update alone", `(() => { const r = [...document.querySelectorAll('#rows tr')]; return r.length === 1 && r[0].cells[1].textContent === 'customer.updated'; })()`)

	// The record: before, after and changes side by side, changed fields marked, redacted
	// values shown as redacted. Enter opens it; Escape closes it and gives the focus back.
	run(t, ctx, "opening the record by keyboard", chromedp.Focus(chromedp.CSS(`#rows tr`)), chromedp.KeyEvent(kb.Enter))
	until(t, ctx, "the record", `document.getElementById('detail').open && document.getElementById('detail-title').textContent.startsWith('customer.updated')`)
	changedBefore := eval[[]string](t, ctx, `[...document.querySelectorAll('#pane-before tr.changed th')].map(x => x.firstChild.textContent)`)
	if strings.Join(changedBefore, ",") != "api_key,email,plan" {
		t.Fatalf("changed fields marked in the before image: %v", changedBefore)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#pane-after tr:not(.changed)').length`); n != 1 {
		t.Fatalf("%d unchanged fields in the after image, want 1 (name)", n)
	}
	diff := eval[string](t, ctx, `document.getElementById('pane-diff').innerText`)
	for _, want := range []string{"ada@old.test", "ada@new.test", "free", "pro"} {
		if !strings.Contains(diff, want) {
			t.Fatalf("the changes lack %q: %s", want, diff)
		}
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#detail .redacted').length`); n != 4 {
		t.Fatalf("%d redacted marks, want 4 (before, after, and both sides of the change)", n)
	}
	if strings.Contains(eval[string](t, ctx, `document.getElementById('detail').innerText`), "[REDACTED]") {
		t.Fatal("a redacted value is shown raw")
	}
	if !eval[bool](t, ctx, `document.activeElement.id === 'close'`) {
		t.Fatal("the dialog does not take the focus")
	}
	shoot(t, ctx, shots, "viewer-record.png")
	run(t, ctx, "Escape", chromedp.KeyEvent(kb.Escape))
	until(t, ctx, "the dialog to close and the row to hold the focus", fmt.Sprintf(
		`!document.getElementById('detail').open && document.activeElement.dataset.id === %q && !location.hash.includes(%q)`, update.ID.String(), update.ID.String()))

	// The request's records, grouped under its http record.
	run(t, ctx, "opening the request", chromedp.Click(chromedp.CSS(`#rows button.req`)))
	until(t, ctx, "the request view", `document.getElementById('view-heading').textContent === 'Records of request req-checkout-1' && document.querySelectorAll('#rows tr').length === 3`)
	if s := eval[string](t, ctx, `document.getElementById('request-summary').innerText`); !strings.Contains(s, "PATCH /customers/cus-42") || !strings.Contains(s, "2 records under it") {
		t.Fatalf("request summary %q", s)
	}
	shoot(t, ctx, shots, "viewer-request.png")

	// The resource's history, from one of its records.
	run(t, ctx, "opening the update from the request", chromedp.Click(chromedp.CSS(`#rows tr[data-id="`+update.ID.String()+`"] td.time`)))
	until(t, ctx, "the record with its history link", `document.getElementById('detail').open && !document.getElementById('open-history').disabled`)
	run(t, ctx, "opening the history", chromedp.Click(chromedp.ID("open-history")))
	until(t, ctx, "the history view", `document.getElementById('view-heading').textContent === 'History of customers cus-42' && document.querySelectorAll('#rows tr').length === 2`)
	if got := eval[[]string](t, ctx, `[...document.querySelectorAll('#rows tr')].map(r => r.cells[1].textContent)`); strings.Join(got, ",") != "customer.updated,customer.created" {
		t.Fatalf("history rows %v", got)
	}

	// Keyboard: from the toolbar, Tab reaches the list; arrows move; Enter opens; Escape closes.
	run(t, ctx, "back to all records", chromedp.Click(chromedp.ID("back")))
	until(t, ctx, "all records", `document.querySelectorAll('#rows tr').length === 50 && !location.hash.includes('request')`)
	third := eval[string](t, ctx, `document.querySelectorAll('#rows tr')[2].dataset.id`)
	run(t, ctx, "keyboard", chromedp.Focus(chromedp.ID("export-ndjson")), chromedp.KeyEvent(kb.Tab))
	if !eval[bool](t, ctx, `document.activeElement === document.querySelector('#rows tr')`) {
		t.Fatalf("Tab from the toolbar lands on %s", eval[string](t, ctx, `document.activeElement.outerHTML.slice(0, 80)`))
	}
	run(t, ctx, "arrows", chromedp.KeyEvent(kb.ArrowDown), chromedp.KeyEvent(kb.ArrowDown), chromedp.KeyEvent(kb.ArrowDown), chromedp.KeyEvent(kb.ArrowUp))
	if got := eval[string](t, ctx, `document.activeElement.dataset.id`); got != third {
		t.Fatalf("after down, down, down, up the focus is on %s, want the third row %s", got, third)
	}
	run(t, ctx, "Enter", chromedp.KeyEvent(kb.Enter))
	until(t, ctx, "the third record", fmt.Sprintf(`document.getElementById('detail').open && document.getElementById('detail-meta').textContent.includes(%q)`, third))
	run(t, ctx, "Escape", chromedp.KeyEvent(kb.Escape))
	until(t, ctx, "the focus back on the third row", fmt.Sprintf(`!document.getElementById('detail').open && document.activeElement.dataset.id === %q`, third))
	run(t, ctx, "Page Down", chromedp.KeyEvent(kb.PageDown))
	until(t, ctx, "page 2 by keyboard", `document.getElementById('page-no').textContent === 'Page 2' && document.activeElement.tagName === 'TR'`)
	run(t, ctx, "Page Up", chromedp.KeyEvent(kb.PageUp))
	until(t, ctx, "page 1 by keyboard", `document.getElementById('page-no').textContent === 'Page 1'`)

	// Live: a new record of acme appears at the top; globex's does not.
	opened := e.streamsOpened()
	run(t, ctx, "following live", chromedp.Click(chromedp.ID("live")))
	until(t, ctx, "the stream", `document.getElementById('live').getAttribute('aria-pressed') === 'true'`)
	e.waitStreamsOpened(opened + 1) // the stream subscribes before it is recorded
	e.write(&core.Record{Kind: core.KindCustom, Action: "globex.live", Tenant: core.Tenant{ID: "globex"}},
		&core.Record{Kind: core.KindCustom, Action: "live.arrived", Tenant: core.Tenant{ID: "acme"}, Actor: core.Actor{ID: "user-3", Type: core.ActorTenantUser}})
	until(t, ctx, "the live record", `document.querySelector('#rows tr.live')?.cells[1].textContent === 'live.arrived'`)
	if n := eval[int](t, ctx, `document.querySelectorAll('#rows tr.live').length`); n != 1 {
		t.Fatalf("%d live rows, want 1 (globex's record must not arrive)", n)
	}
	run(t, ctx, "stop following", chromedp.Click(chromedp.ID("live")))

	// Export: the filtered records as CSV, downloaded.
	fill(t, ctx, "action", "user.login")
	run(t, ctx, "filter then export", chromedp.Click(chromedp.ID("apply")))
	until(t, ctx, "user.login alone", `(() => { const r = [...document.querySelectorAll('#rows tr')]; return r.length === 30 && r.every(x => x.cells[1].textContent === 'user.login'); })()`)
	run(t, ctx, "export CSV", chromedp.Click(chromedp.ID("export-csv")))
	until(t, ctx, "the export", `document.getElementById('status').textContent.startsWith('Exported to audit-logs-acme-')`)
	var csv []byte
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		files, _ := filepath.Glob(filepath.Join(downloads, "audit-logs-acme-*.csv"))
		if len(files) == 1 {
			if b, err := os.ReadFile(files[0]); err == nil && bytes.Count(b, []byte("\n")) >= 31 {
				csv = b
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if csv == nil {
		t.Fatal("no CSV file was downloaded")
	}
	if n := bytes.Count(csv, []byte("user.login")); n != 30 || bytes.Contains(csv, []byte("globex")) || !bytes.HasPrefix(csv, []byte("id,")) {
		t.Fatalf("the CSV holds %d user.login rows (want 30) or other tenants' rows:\n%.300s", n, csv)
	}

	// The chain of acme verifies.
	run(t, ctx, "verify", chromedp.Click(chromedp.ID("verify")))
	until(t, ctx, "the chain status", `document.getElementById('chain-text').textContent.startsWith('Chain intact')`)

	// Editing the address: another tenant by parameter, by record id.
	hash(t, ctx, "/logs?tenant_id=globex")
	until(t, ctx, "the refusal", `!document.getElementById('error').hidden && document.querySelectorAll('#rows tr').length === 0`)
	hash(t, ctx, "/logs/"+globexID)
	until(t, ctx, "the refusal of the record", `!document.getElementById('error').hidden && document.getElementById('error').textContent.includes('not found') && !document.getElementById('detail').open`)
	if txt := eval[string](t, ctx, `document.documentElement.innerHTML`); strings.Contains(txt, "GLOBEXSECRET") || strings.Contains(txt, "globex.secret") {
		t.Fatal("globex's records reached acme's page")
	}
}

// A viewer token minted for a customer: the page offers only what its scopes allow, and the
// customer cannot reach another tenant by editing the address.
func TestViewerTokenInBrowser(t *testing.T) {
	e := newEnv(t)
	e.write(&core.Record{Kind: core.KindCustom, Action: "invoice.paid", Tenant: core.Tenant{ID: "acme"}},
		&core.Record{Kind: core.KindCustom, Action: "globex.secret", Tenant: core.Tenant{ID: "globex"}})
	tok, err := e.vt.MintViewerToken("acme", "customer-17", 10*time.Minute, ginaudit.ViewerScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	ctx := chromium(t, t.TempDir())
	run(t, ctx, "opening the viewer under the API", chromedp.Navigate(e.url+"/api/v1/viewer/#token="+tok))
	until(t, ctx, "the record", `document.querySelectorAll('#rows tr').length === 1`)
	if who := eval[string](t, ctx, `document.getElementById('who').textContent`); !strings.Contains(who, "customer-17") || !strings.Contains(who, "viewer token") {
		t.Fatalf("who: %q", who)
	}
	for _, id := range []string{"export-csv", "export-ndjson", "live", "verify"} {
		if !eval[bool](t, ctx, `document.getElementById('`+id+`').disabled`) {
			t.Errorf("%s is offered to a token without its scope", id)
		}
	}
	if eval[bool](t, ctx, `!document.getElementById('tenant-field').hidden`) {
		t.Error("the tenant field is offered to a viewer")
	}
	// The server refuses what the page does not offer, however it is asked.
	status := eval[float64](t, ctx, `fetch('/api/v1/logs/export?format=csv', {headers: {Authorization: 'Bearer ' + sessionStorage.getItem('auditkit.viewer.token')}}).then(r => r.status)`)
	if status != http.StatusForbidden {
		t.Fatalf("export with a read-only viewer token: %v", status)
	}
	hash(t, ctx, "/logs?tenant_id=globex")
	until(t, ctx, "the refusal", `!document.getElementById('error').hidden && document.querySelectorAll('#rows tr').length === 0`)
	if strings.Contains(eval[string](t, ctx, `document.documentElement.innerHTML`), "globex.secret") {
		t.Fatal("a viewer token reaches another tenant")
	}
	// Signing out forgets the token.
	run(t, ctx, "sign out", chromedp.Click(chromedp.ID("signout")))
	until(t, ctx, "the sign-in form", `!document.getElementById('signin').hidden && sessionStorage.getItem('auditkit.viewer.token') === null`)
}
