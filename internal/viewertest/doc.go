// Package viewertest drives the log viewer (ginaudit.APIOptions.ViewerPath) in a real headless
// Chromium through the DevTools protocol, against a real API, store and PostgreSQL: filters,
// pages, a record's images and changes, a request's records, live updates, exports, the chain's
// status, keyboard use, and tenant isolation when the address is edited. Its tests live apart
// from ginaudit's so that those stay fast; they need /usr/bin/chromium (Debian's chromium
// package) or the browser named by AUDITKIT_CHROMIUM.
//
// With AUDITKIT_VIEWER_SCREENSHOTS set to a directory, TestViewerInBrowser saves its screenshots
// of the main views there (docs/ holds the committed ones).
package viewertest
