package viewertest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/auditkit/auditkit/core"
)

// BenchmarkViewerMillionRows turns pages of the viewer over a tenant of 1,000,000 records (and
// as many of another tenant): one operation is a click on "Next page" until the new page is
// drawn, measured in the browser. The list holds one page at a time whatever the page number.
//
//	go test -run '^$' -bench ViewerMillionRows -benchtime 40x ./internal/viewertest/
func BenchmarkViewerMillionRows(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	start := time.Now()
	for _, tenant := range []string{"acme", "globex"} {
		_, err := e.db.Pool.Exec(ctx, `INSERT INTO audit_logs (id, occurred_at, kind, action, severity, tenant_id, actor_id, actor_type, resource_type, resource_id, metadata)
			SELECT gen_random_uuid(), now() - make_interval(secs => g), 'custom', (ARRAY['invoice.paid','user.login','project.archived'])[1 + g % 3],
			       'info', $1, 'user-' || (g % 97), 'tenant_user', 'invoice', 'inv-' || g, jsonb_build_object('n', g)
			FROM generate_series(1, 1000000) g`, tenant)
		if err != nil {
			b.Fatal(err)
		}
	}
	if _, err := e.db.Pool.Exec(ctx, `ANALYZE audit_logs`); err != nil {
		b.Fatal(err)
	}
	b.Logf("2,000,000 records inserted in %s", time.Since(start).Round(time.Second))
	browserCtx := chromium(b, b.TempDir())
	user := token(b, "user-1", core.ActorTenantUser, "acme")
	t0 := time.Now()
	run(b, browserCtx, "opening the viewer", chromedp.Navigate(e.url+"/#token="+user))
	until(b, browserCtx, "the first page", `document.querySelectorAll('#rows tr').length === 50`)
	b.Logf("first page drawn %s after navigation", time.Since(t0).Round(time.Millisecond))

	b.ResetTimer()
	for i := range b.N {
		first := eval[string](b, browserCtx, `document.querySelector('#rows tr').dataset.id`)
		run(b, browserCtx, "next page", chromedp.Click(chromedp.ID("next")))
		until(b, browserCtx, "the next page", fmt.Sprintf(`document.getElementById('page-no').textContent === 'Page %d' && document.querySelector('#rows tr')?.dataset.id !== %q && document.getElementById('records').getAttribute('aria-busy') === 'false'`, i+2, first))
	}
	b.StopTimer()
	if n := eval[int](b, browserCtx, `document.querySelectorAll('#rows tr').length`); n != 50 {
		b.Fatalf("the list holds %d rows after %d pages, want one page of 50", n, b.N)
	}
	if eval[bool](b, browserCtx, `document.body.innerText.includes('globex')`) {
		b.Fatal("another tenant's records are shown")
	}
}
