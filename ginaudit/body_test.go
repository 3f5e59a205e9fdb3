package ginaudit_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
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
	long := `{"name":"` + strings.Repeat("x", 200) + `","password":"s3cret"}`
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
			fmt.Sprintf("%d %s", len(long), digest([]byte(long))),
			func(t *testing.T, r row) {
				if r.RequestBody["truncated"] != true || r.RequestBody["size"] != float64(len(long)) ||
					len(fmt.Sprint(r.RequestBody["text"])) != 64 || strings.Contains(r.RawRequestBody, "s3cret") {
					t.Errorf("request_body %v", r.RequestBody)
				}
			}},
		{"chunked over the cap", "/read", "application/json", long, true,
			fmt.Sprintf("%d %s", len(long), digest([]byte(long))),
			func(t *testing.T, r row) {
				if r.RequestBody["truncated"] != true || len(fmt.Sprint(r.RequestBody["text"])) != 64 {
					t.Errorf("request_body %v", r.RequestBody)
				}
			}},
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

func TestMultipartNotCaptured(t *testing.T) {
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
	fw, _ := mw.CreateFormFile("file", "secret.bin")
	payload := bytes.Repeat([]byte("password=hunter2\x00"), 100)
	_, _ = fw.Write(payload)
	_ = mw.Close()
	_, got := h.do("POST", "/upload", &buf, "Content-Type", mw.FormDataContentType())
	if want := fmt.Sprintf("report %d %s", len(payload), digest(payload)); got != want {
		t.Fatalf("handler answered %q, want %q", got, want)
	}
	r := only(t, h.rows())
	if r.RequestBody["omitted"] != "binary" || !strings.HasPrefix(fmt.Sprint(r.RequestBody["content_type"]), "multipart/form-data") ||
		strings.Contains(r.RawRequestBody, "hunter2") {
		t.Fatalf("request_body %s", r.RawRequestBody)
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
	resp, got := h.do("POST", "/read", strings.NewReader(strings.Repeat("z", 100)), "Content-Type", "text/plain")
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.HasPrefix(got, "read 50 then") {
		t.Fatalf("handler answered %d %q", resp.StatusCode, got)
	}
	r := only(t, h.rows())
	if r.RequestBody["truncated"] != true || r.RequestBody["text"] != strings.Repeat("z", 50) {
		t.Fatalf("request_body %v", r.RequestBody)
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
			if r.ResponseBody["truncated"] != true || r.ResponseBody["size"] != float64(len(big)+8) || len(fmt.Sprint(r.ResponseBody["text"])) != 32 {
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
	if r.Metadata["response_streamed"] != true || r.ResponseBody != nil {
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
			if r.Status != 101 || r.Metadata["hijacked"] != true || r.ResponseBody != nil {
				t.Fatalf("row status %d metadata %v body %v", r.Status, r.Metadata, r.ResponseBody)
			}
		})
	}
}
