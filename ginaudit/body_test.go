package ginaudit_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
)

func captureConfig(limit int) core.Config {
	return core.Config{LogAnonymous: true, CaptureRequestBody: true, CaptureResponseBody: true, MaxBodySizeBytes: limit}
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// readAll is a handler that reads the whole body and answers with its length and digest.
func readAll(c *gin.Context) {
	b, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			c.String(http.StatusRequestEntityTooLarge, "read %d then %v", len(b), err)
			return
		}
		c.String(400, "read error %v", err)
		return
	}
	c.String(200, "%d %s", len(b), digest(b))
}

func TestRequestBodyCapture(t *testing.T) {
	h := newHarness(t, ginaudit.Options{Config: captureConfig(64)}, func(r *gin.Engine, _ *core.Writer) {
		r.POST("/read", readAll)
		r.POST("/bind", func(c *gin.Context) {
			var v struct{ Name string }
			if err := c.ShouldBindJSON(&v); err != nil {
				c.String(400, err.Error())
				return
			}
			c.String(200, v.Name)
		})
		r.POST("/bind-twice", func(c *gin.Context) {
			var a, b struct{ Name string }
			if err := c.ShouldBindBodyWithJSON(&a); err != nil {
				c.String(400, err.Error())
				return
			}
			if err := c.ShouldBindBodyWithJSON(&b); err != nil {
				c.String(400, err.Error())
				return
			}
			c.String(200, a.Name+b.Name)
		})
		r.POST("/form", func(c *gin.Context) { c.String(200, c.PostForm("user")) })
		r.POST("/ignore", func(c *gin.Context) { c.Status(204) }) // never reads the body
	})
	// The secret lies inside the cap: the kept prefix must be redacted, not merely cut short. The
	// complete part of the JSON is kept; the value cut by the cap is not.
	long := `{"password":"s3cret","name":"` + strings.Repeat("x", 200) + `"}`
	truncatedAndRedacted := func(t *testing.T, r row) {
		t.Helper()
		if r.RequestBody["truncated"] != true || r.RequestBody["size"] != float64(len(long)) || r.RequestBody["format"] != "json" ||
			fmt.Sprint(r.RequestBody["value"]) != "map[name:[truncated] password:[REDACTED]]" ||
			strings.Contains(r.RawRequestBody, "s3cret") {
			t.Errorf("request_body %v", r.RequestBody)
		}
	}
	cases := []struct {
		name, path, ct, body string
		chunked              bool
		wantResp             string
		check                func(t *testing.T, r row)
	}{
		{"small JSON, redacted", "/bind", "application/json", `{"name":"Ada","password":"s3cret"}`, false, "Ada",
			func(t *testing.T, r row) {
				if r.RequestBody["name"] != "Ada" || r.RequestBody["password"] != core.Redacted {
					t.Errorf("request_body %v", r.RequestBody)
				}
			}},
		{"bound twice through gin's body cache", "/bind-twice", "application/json", `{"name":"Bo"}`, false, "BoBo",
			func(t *testing.T, r row) {
				if r.RequestBody["name"] != "Bo" {
					t.Errorf("request_body %v", r.RequestBody)
				}
			}},
		{"over the cap: truncated, handler reads everything", "/read", "application/json", long, false,
			fmt.Sprintf("%d %s", len(long), digest([]byte(long))), truncatedAndRedacted},
		{"chunked over the cap", "/read", "application/json", long, true,
			fmt.Sprintf("%d %s", len(long), digest([]byte(long))), truncatedAndRedacted},
		{"chunked under the cap", "/bind", "application/json", `{"name":"Cy"}`, true, "Cy",
			func(t *testing.T, r row) {
				if r.RequestBody["name"] != "Cy" {
					t.Errorf("request_body %v", r.RequestBody)
				}
			}},
		{"exactly the cap", "/read", "text/plain", strings.Repeat("y", 64), false,
			fmt.Sprintf("64 %s", digest(bytes.Repeat([]byte("y"), 64))),
			func(t *testing.T, r row) {
				if r.RequestBody["truncated"] != false || r.RequestBody["text"] != strings.Repeat("y", 64) {
					t.Errorf("request_body %v", r.RequestBody)
				}
			}},
		{"form, redacted", "/form", "application/x-www-form-urlencoded", "user=ada&password=hunter2", false, "ada",
			func(t *testing.T, r row) {
				if r.RequestBody["user"] != "ada" || r.RequestBody["password"] != core.Redacted {
					t.Errorf("request_body %v", r.RequestBody)
				}
			}},
		{"event stream not read", "/read", "text/event-stream", "data: password=hunter2\n\n", false,
			fmt.Sprintf("24 %s", digest([]byte("data: password=hunter2\n\n"))),
			func(t *testing.T, r row) {
				if r.RequestBody["omitted"] != "not_captured" || r.RequestBody["reason"] != "content type not captured" ||
					r.RequestBody["size"] != float64(24) || r.RequestBody["text"] != nil {
					t.Errorf("request_body %v", r.RequestBody)
				}
			}},
		{"binary not read", "/read", "application/octet-stream", "\x00\x01binary", false,
			fmt.Sprintf("8 %s", digest([]byte("\x00\x01binary"))),
			func(t *testing.T, r row) {
				if r.RequestBody["omitted"] != "binary" || r.RequestBody["size"] != float64(8) {
					t.Errorf("request_body %v", r.RequestBody)
				}
			}},
		{"captured although the handler ignores it", "/ignore", "application/json", `{"a":1}`, false, "",
			func(t *testing.T, r row) {
				if r.RequestBody["a"] != float64(1) {
					t.Errorf("request_body %v", r.RequestBody)
				}
			}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // unknown length: sent chunked
			}
			id := fmt.Sprint("case-", i)
			_, got := h.do("POST", tc.path, body, "Content-Type", tc.ct, "X-Request-ID", id)
			if got != tc.wantResp {
				t.Fatalf("handler answered %q, want %q", got, tc.wantResp)
			}
			tc.check(t, only(t, fetchRows(t, h.w, h.db, "request_id = $1", id)))
		})
	}
}

// TestMultipartFormCaptured: a multipart form is stored as its parts, fields with their
// redacted values and files by size only.
func TestMultipartFormCaptured(t *testing.T) {
	h := newHarness(t, ginaudit.Options{Config: captureConfig(1 << 20)}, func(r *gin.Engine, _ *core.Writer) {
		r.POST("/upload", func(c *gin.Context) {
			fh, err := c.FormFile("file")
			if err != nil {
				c.String(400, err.Error())
				return
			}
			f, _ := fh.Open()
			b, _ := io.ReadAll(f)
			c.String(200, "%s %d %s", c.PostForm("title"), len(b), digest(b))
		})
	})
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("title", "report")
	_ = mw.WriteField("password", "hunter2")
	fw, _ := mw.CreateFormFile("file", "secret.bin")
	payload := bytes.Repeat([]byte("password=hunter2\x00"), 100)
	_, _ = fw.Write(payload)
	_ = mw.Close()
	_, got := h.do("POST", "/upload", &buf, "Content-Type", mw.FormDataContentType())
	if want := fmt.Sprintf("report %d %s", len(payload), digest(payload)); got != want {
		t.Fatalf("handler answered %q, want %q", got, want)
	}
	r := only(t, h.rows())
	want := `[map[name:title size:6 value:report] map[name:password size:7 value:[REDACTED]] ` +
		fmt.Sprintf(`map[content_type:application/octet-stream filename:secret.bin name:file omitted:file size:%d]]`, len(payload))
	if got := fmt.Sprint(r.RequestBody["parts"]); got != want || r.RequestBody["format"] != "multipart" ||
		!strings.HasPrefix(fmt.Sprint(r.RequestBody["content_type"]), "multipart/form-data") ||
		strings.Contains(r.RawRequestBody, "hunter2") {
		t.Fatalf("request_body %s\nparts %s\nwant  %s", r.RawRequestBody, got, want)
	}
}

func TestMaxBytesReaderErrorReachesHandler(t *testing.T) {
	h := newHarnessWith(t, func(w *core.Writer) *gin.Engine {
		r := gin.New()
		r.Use(func(c *gin.Context) { c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 50) })
		r.Use(ginaudit.Middleware(ginaudit.Options{Writer: w, Config: captureConfig(1000), Logger: discardLogger()}))
		r.POST("/read", readAll)
		return r
	})
	// Words of two bytes: the 50 bytes read end between words, so none of them was cut (the
	// redactor replaces a cut last word by "[truncated]").
	resp, got := h.do("POST", "/read", strings.NewReader(strings.Repeat("z ", 50)), "Content-Type", "text/plain")
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.HasPrefix(got, "read 50 then") {
		t.Fatalf("handler answered %d %q", resp.StatusCode, got)
	}
	r := only(t, h.rows())
	if r.RequestBody["truncated"] != true || r.RequestBody["text"] != strings.Repeat("z ", 25) || r.RequestBody["size"] != float64(100) {
		t.Fatalf("request_body %v", r.RequestBody)
	}
}

// TestBodyGoneBeforeAnyByte: a client that announces a body and sends none of it leaves a
// record that says the body was not captured, not an empty body.
func TestBodyGoneBeforeAnyByte(t *testing.T) {
	h := newHarness(t, ginaudit.Options{Config: captureConfig(1024)}, func(r *gin.Engine, _ *core.Writer) {
		r.POST("/read", readAll)
	})
	conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = fmt.Fprintf(conn, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 20\r\nX-Request-ID: gone\r\n\r\n")
	_ = conn.(*net.TCPConn).CloseWrite()
	_, _ = io.ReadAll(conn)
	// In process, a body that ends at once although Content-Length announced 20 bytes.
	req := httptest.NewRequest("POST", "/read", strings.NewReader(""))
	req.ContentLength = 20
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("X-Request-ID", "empty")
	h.engine.ServeHTTP(httptest.NewRecorder(), req)
	// The same, sent after "100 Continue" (captured as the handler reads it).
	req = httptest.NewRequest("POST", "/read", strings.NewReader(""))
	req.ContentLength = 20
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("X-Request-ID", "empty-expect")
	h.engine.ServeHTTP(httptest.NewRecorder(), req)
	for _, id := range []string{"gone", "empty", "empty-expect"} {
		r := only(t, waitRows(t, h.w, h.db, 1, "request_id = $1", id))
		if r.RequestBody["omitted"] != "not_captured" || r.RequestBody["reason"] != "read failed before any byte" ||
			r.RequestBody["size"] != float64(20) || r.RequestBody["text"] != nil {
			t.Fatalf("%s: request_body %v", id, r.RequestBody)
		}
	}
}

func TestResponseBodyCapture(t *testing.T) {
	big := strings.Repeat("abcdefgh", 20)
	h := newHarness(t, ginaudit.Options{Config: captureConfig(32)}, func(r *gin.Engine, _ *core.Writer) {
		r.GET("/json", func(c *gin.Context) { c.JSON(200, gin.H{"id": 7, "api_token": "t0k"}) })
		r.GET("/string", func(c *gin.Context) { c.String(200, "hello %s", "world") })
		r.GET("/writestring", func(c *gin.Context) {
			c.Header("Content-Type", "text/plain")
			_, _ = c.Writer.WriteString("via ")
			_, _ = c.Writer.WriteString("WriteString")
		})
		r.GET("/big", func(c *gin.Context) { c.Data(200, "application/json", []byte(`{"v":"`+big+`"}`)) })
		r.GET("/binary", func(c *gin.Context) { c.Data(200, "image/png", []byte("\x89PNG....")) })
		r.GET("/deadline", func(c *gin.Context) {
			// http.NewResponseController must reach the connection through the wrapper.
			err := http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(time.Minute))
			c.String(200, "%v", err)
		})
		r.GET("/empty", func(c *gin.Context) { c.Status(204) })
	})
	cases := []struct {
		path     string
		wantResp string
		check    func(t *testing.T, r row)
	}{
		{"/json", `{"api_token":"t0k","id":7}`, func(t *testing.T, r row) {
			if r.ResponseBody["id"] != float64(7) || r.ResponseBody["api_token"] != core.Redacted {
				t.Errorf("response_body %v", r.ResponseBody)
			}
		}},
		{"/string", "hello world", func(t *testing.T, r row) {
			if r.ResponseBody["text"] != "hello world" || r.ResponseBody["truncated"] != false {
				t.Errorf("response_body %v", r.ResponseBody)
			}
		}},
		{"/writestring", "via WriteString", func(t *testing.T, r row) {
			if r.ResponseBody["text"] != "via WriteString" {
				t.Errorf("response_body %v", r.ResponseBody)
			}
		}},
		{"/big", `{"v":"` + big + `"}`, func(t *testing.T, r row) {
			if r.ResponseBody["truncated"] != true || r.ResponseBody["size"] != float64(len(big)+8) ||
				fmt.Sprint(r.ResponseBody["value"]) != "map[v:[truncated]]" {
				t.Errorf("response_body %v", r.ResponseBody)
			}
		}},
		{"/binary", "\x89PNG....", func(t *testing.T, r row) {
			if r.ResponseBody["omitted"] != "binary" || r.ResponseBody["size"] != float64(8) {
				t.Errorf("response_body %v", r.ResponseBody)
			}
		}},
		{"/deadline", "<nil>", func(t *testing.T, r row) {}},
		{"/empty", "", func(t *testing.T, r row) {
			if r.ResponseBody != nil {
				t.Errorf("response_body %v for an empty response", r.ResponseBody)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			_, got := h.do("GET", tc.path, nil)
			if got != tc.wantResp {
				t.Fatalf("client got %q, want %q", got, tc.wantResp)
			}
			tc.check(t, only(t, fetchRows(t, h.w, h.db, "path = $1", tc.path)))
		})
	}
}

func TestServerSentEventsAreNotBuffered(t *testing.T) {
	proceed := make(chan struct{})
	h := newHarness(t, ginaudit.Options{Config: captureConfig(1 << 20)}, func(r *gin.Engine, _ *core.Writer) {
		r.GET("/events", func(c *gin.Context) {
			c.SSEvent("msg", "one")
			c.Writer.Flush()
			select {
			case <-proceed: // the client has seen "one" while the handler is still running
			case <-time.After(10 * time.Second):
				c.SSEvent("msg", "timeout")
				return
			}
			c.SSEvent("msg", "two")
		})
	})
	resp, err := h.srv.Client().Get(h.srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var first strings.Builder
	for !strings.Contains(first.String(), "one") {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the first event: %v (so far %q)", err, first.String())
		}
		first.WriteString(line)
	}
	close(proceed)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "two") {
		t.Fatalf("rest of the stream %q", rest)
	}
	r := only(t, h.rows())
	if r.Metadata["response_streamed"] != true || r.ResponseBody["omitted"] != "not_captured" ||
		r.ResponseBody["reason"] != "streamed" || !strings.HasPrefix(fmt.Sprint(r.ResponseBody["content_type"]), "text/event-stream") ||
		r.ResponseBody["text"] != nil {
		t.Fatalf("streamed response recorded as %v / %v", r.Metadata, r.ResponseBody)
	}
}

func TestHijackedConnection(t *testing.T) {
	for _, capture := range []bool{false, true} {
		t.Run(fmt.Sprint("capture=", capture), func(t *testing.T) {
			cfg := core.Config{LogAnonymous: true, CaptureResponseBody: capture}
			h := newHarness(t, ginaudit.Options{Config: cfg}, func(r *gin.Engine, _ *core.Writer) {
				r.GET("/ws", func(c *gin.Context) {
					conn, rw, err := c.Writer.Hijack()
					if err != nil {
						c.String(500, err.Error())
						return
					}
					defer conn.Close()
					_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello")
					_ = rw.Flush()
				})
			})
			conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			_, _ = fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			got, _ := io.ReadAll(conn)
			if !strings.HasPrefix(string(got), "HTTP/1.1 101") || !strings.HasSuffix(string(got), "hello") {
				t.Fatalf("client got %q", got)
			}
			// The client sees EOF when the handler closes the connection, before the middleware
			// has finished the request: wait for its record.
			r := only(t, waitRows(t, h.w, h.db, 1, ""))
			if r.Status != 101 || r.Metadata["hijacked"] != true {
				t.Fatalf("row status %d metadata %v body %v", r.Status, r.Metadata, r.ResponseBody)
			}
			// Captured or not, the body never reads as an empty response.
			if capture && (r.ResponseBody["omitted"] != "not_captured" || r.ResponseBody["reason"] != "connection hijacked") ||
				!capture && r.ResponseBody != nil {
				t.Fatalf("response_body %v", r.ResponseBody)
			}
		})
	}
}

func TestExpectContinueIsNotForced(t *testing.T) {
	h := newHarness(t, ginaudit.Options{Config: captureConfig(1024)}, func(r *gin.Engine, _ *core.Writer) {
		r.POST("/login", func(c *gin.Context) { c.String(http.StatusUnauthorized, "who are you") }) // never reads
		r.POST("/bind", func(c *gin.Context) {
			var v struct{ Name string }
			if err := c.ShouldBindJSON(&v); err != nil {
				c.String(400, err.Error())
				return
			}
			c.String(200, v.Name)
		})
	})

	t.Run("refused unread: no 100 Continue", func(t *testing.T) {
		conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		// The client waits for 100 Continue before sending its 20 bytes, so it sends none.
		_, _ = fmt.Fprintf(conn, "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
			"Content-Length: 20\r\nExpect: 100-continue\r\nX-Request-ID: expect-401\r\n\r\n")
		status, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			t.Fatalf("reading the status line: %v", err)
		}
		if !strings.HasPrefix(status, "HTTP/1.1 401") {
			t.Fatalf("first line %q, want the handler's 401 without 100 Continue", status)
		}
		r := only(t, waitRows(t, h.w, h.db, 1, "request_id = 'expect-401'"))
		if r.Status != 401 || r.Metadata["request_body_partial"] != true || r.RequestBody["omitted"] != "not_captured" ||
			r.RequestBody["reason"] != "not read by the handler" || r.RequestBody["size"] != float64(20) || r.RequestBody["text"] != nil {
			t.Fatalf("row status %d metadata %v request_body %v", r.Status, r.Metadata, r.RequestBody)
		}
	})

	t.Run("read after 100 Continue", func(t *testing.T) {
		tr := &http.Transport{ExpectContinueTimeout: 30 * time.Second} // sends the body only after 100 Continue
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("POST", h.srv.URL+"/bind", strings.NewReader(`{"name":"Ada","password":"pw"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Expect", "100-continue")
		req.Header.Set("X-Request-ID", "expect-200")
		resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != "Ada" {
			t.Fatalf("response %d %q", resp.StatusCode, got)
		}
		r := only(t, fetchRows(t, h.w, h.db, "request_id = 'expect-200'"))
		if r.RequestBody["name"] != "Ada" || r.RequestBody["password"] != core.Redacted || r.Metadata["request_body_partial"] != nil {
			t.Fatalf("request_body %v metadata %v", r.RequestBody, r.Metadata)
		}
	})
}

func TestChunkedBodyIsCapturedAsTheHandlerReads(t *testing.T) {
	h := newHarness(t, ginaudit.Options{Config: captureConfig(1024)}, func(r *gin.Engine, _ *core.Writer) {
		r.POST("/read", readAll)
		// Full duplex: the handler answers each line as it arrives, and the client sends the next
		// line only after it has seen that answer.
		r.POST("/duplex", func(c *gin.Context) {
			if err := http.NewResponseController(c.Writer).EnableFullDuplex(); err != nil {
				c.String(500, err.Error())
				return
			}
			c.Header("Content-Type", "text/plain")
			c.Status(200)
			br := bufio.NewReader(c.Request.Body)
			for {
				line, err := br.ReadString('\n')
				if line != "" {
					_, _ = fmt.Fprintf(c.Writer, "ack %s", line)
					c.Writer.Flush()
				}
				if err != nil {
					return
				}
			}
		})
	})

	t.Run("chunked JSON read to the end", func(t *testing.T) {
		body := `{"name":"Cy","password":"pw","items":[1,2,3]}`
		_, got := h.do("POST", "/read", io.MultiReader(strings.NewReader(body)), // unknown length: chunked
			"Content-Type", "application/json", "X-Request-ID", "chunked-json")
		if want := fmt.Sprintf("%d %s", len(body), digest([]byte(body))); got != want {
			t.Fatalf("handler answered %q, want %q", got, want)
		}
		r := only(t, fetchRows(t, h.w, h.db, "request_id = 'chunked-json'"))
		if r.RequestBody["name"] != "Cy" || r.RequestBody["password"] != core.Redacted || r.Metadata["request_body_partial"] != nil {
			t.Fatalf("request_body %v metadata %v", r.RequestBody, r.Metadata)
		}
	})

	t.Run("full duplex", func(t *testing.T) {
		conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		chunk := func(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }
		_, _ = fmt.Fprintf(conn, "POST /duplex HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"+
			"Transfer-Encoding: chunked\r\nX-Request-ID: duplex\r\n\r\n%s", chunk(`{"n":1}`+"\n"))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no response to the first line (the body was read ahead of the handler?): %v", err)
		}
		rb := bufio.NewReader(resp.Body)
		first, err := rb.ReadString('\n')
		if err != nil || first != `ack {"n":1}`+"\n" {
			t.Fatalf("first answer %q, %v", first, err)
		}
		_, _ = fmt.Fprintf(conn, "%s0\r\n\r\n", chunk(`{"n":2}`+"\n"))
		rest, err := io.ReadAll(rb)
		if err != nil || string(rest) != `ack {"n":2}`+"\n" {
			t.Fatalf("second answer %q, %v", rest, err)
		}
		r := only(t, waitRows(t, h.w, h.db, 1, "request_id = 'duplex'"))
		if r.RequestBody["text"] != `{"n":1}`+"\n"+`{"n":2}`+"\n" || r.RequestBody["truncated"] != false || r.RequestBody["size"] != float64(16) {
			t.Fatalf("request_body %v", r.RequestBody)
		}
	})
}

func gzipped(t testing.TB, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// gzipWriter compresses what the handlers behind it write, like common Gin compression
// middleware: Content-Encoding is set before the chain runs.
type gzipWriter struct {
	gin.ResponseWriter
	zw *gzip.Writer
}

func (w *gzipWriter) Write(p []byte) (int, error) {
	w.Header().Del("Content-Length") // the handler's length is that of the plain bytes
	return w.zw.Write(p)
}

func (w *gzipWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

func gzipMiddleware(c *gin.Context) {
	c.Header("Content-Encoding", "gzip")
	c.Header("Vary", "Accept-Encoding")
	zw := gzip.NewWriter(c.Writer)
	orig := c.Writer
	c.Writer = &gzipWriter{ResponseWriter: orig, zw: zw}
	c.Next()
	_ = zw.Close()
	c.Writer = orig
}

func TestContentEncodedBodiesAreNotStoredAsText(t *testing.T) {
	const secretJSON = `{"id":7,"api_token":"t0k","note":"plain text of a compressed body"}`
	h := newHarness(t, ginaudit.Options{Config: captureConfig(1024)}, func(r *gin.Engine, _ *core.Writer) {
		r.POST("/upload", func(c *gin.Context) {
			zr, err := gzip.NewReader(c.Request.Body)
			if err != nil {
				c.String(400, err.Error())
				return
			}
			b, err := io.ReadAll(zr)
			if err != nil {
				c.String(400, err.Error())
				return
			}
			c.String(200, "%d %s", len(b), digest(b))
		})
		r.GET("/precompressed", func(c *gin.Context) {
			c.Header("Content-Encoding", "gzip")
			c.Data(200, "application/json", gzipped(t, secretJSON))
		})
		// Compression registered inside the audit middleware: it sees compressed bytes.
		r.GET("/inner-gzip", gzipMiddleware, func(c *gin.Context) { c.Data(200, "application/json", []byte(secretJSON)) })
	})

	t.Run("request", func(t *testing.T) {
		z := gzipped(t, secretJSON)
		_, got := h.do("POST", "/upload", bytes.NewReader(z), "Content-Type", "application/json",
			"Content-Encoding", "gzip", "X-Request-ID", "gzip-request")
		if want := fmt.Sprintf("%d %s", len(secretJSON), digest([]byte(secretJSON))); got != want {
			t.Fatalf("handler answered %q, want %q", got, want)
		}
		r := only(t, fetchRows(t, h.w, h.db, "request_id = 'gzip-request'"))
		if r.RequestBody["omitted"] != "encoded" || r.RequestBody["size"] != float64(len(z)) ||
			r.RequestBody["content_encoding"] != "gzip" || r.RequestBody["content_type"] != "application/json" || r.RequestBody["text"] != nil {
			t.Fatalf("request_body %s", r.RawRequestBody)
		}
	})

	for _, path := range []string{"/precompressed", "/inner-gzip"} {
		t.Run("response "+path, func(t *testing.T) {
			req, _ := http.NewRequest("GET", h.srv.URL+path, nil)
			req.Header.Set("Accept-Encoding", "gzip") // set by hand: the client does not decompress
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("client got %q: %v", raw, err)
			}
			if plain, _ := io.ReadAll(zr); string(plain) != secretJSON {
				t.Fatalf("client decompressed %q", plain)
			}
			r := only(t, fetchRows(t, h.w, h.db, "path = $1", path))
			if r.ResponseBody["omitted"] != "encoded" || r.ResponseBody["size"] != float64(len(raw)) ||
				r.ResponseBody["content_encoding"] != "gzip" || !strings.HasPrefix(fmt.Sprint(r.ResponseBody["content_type"]), "application/json") {
				t.Fatalf("response_body %v", r.ResponseBody)
			}
		})
	}

	// Compression registered outside (before) the audit middleware: the audit sees the plain
	// response, so it is stored as JSON, redacted.
	t.Run("response, compression outside", func(t *testing.T) {
		h := newHarnessWith(t, func(w *core.Writer) *gin.Engine {
			r := gin.New()
			r.Use(gzipMiddleware, ginaudit.Middleware(ginaudit.Options{Writer: w, Config: captureConfig(1024), Logger: discardLogger()}))
			r.GET("/json", func(c *gin.Context) { c.Data(200, "application/json", []byte(secretJSON)) })
			return r
		})
		resp, got := h.do("GET", "/json", nil) // the client asks for gzip and decompresses
		if got != secretJSON || !resp.Uncompressed {
			t.Fatalf("client got %q (uncompressed by the transport: %v)", got, resp.Uncompressed)
		}
		r := only(t, h.rows())
		if r.ResponseBody["id"] != float64(7) || r.ResponseBody["api_token"] != core.Redacted {
			t.Fatalf("response_body %v", r.ResponseBody)
		}
	})
}
