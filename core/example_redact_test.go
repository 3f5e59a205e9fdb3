package core_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"reflect"

	"github.com/auditkit/auditkit/core"
)

func ExampleRedactor_Map() {
	r := core.NewRedactor([]string{"pin"}, []string{"token_type"})
	after := map[string]any{
		"email":         "ada@example.com",
		"password_hash": "$2a$10$...",
		"pin":           1234,
		"token_type":    "bearer",
		"profile":       map[string]any{"apiKey": "k-123", "city": "Oslo"},
		"settings":      `{"smtp":{"user":"ada","password":"hunter2"}}`,
		"callback":      "https://hooks.example.com/in?access_token=abc&v=2",
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r.Map(after)); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {
	//   "callback": "https://hooks.example.com/in?access_token=[REDACTED]&v=2",
	//   "email": "ada@example.com",
	//   "password_hash": "[REDACTED]",
	//   "pin": "[REDACTED]",
	//   "profile": {
	//     "apiKey": "[REDACTED]",
	//     "city": "Oslo"
	//   },
	//   "settings": "{\"smtp\":{\"password\":\"[REDACTED]\",\"user\":\"ada\"}}",
	//   "token_type": "bearer"
	// }
}

func ExampleRedactor_Diff() {
	r := core.NewRedactor(nil, nil)
	diff := r.Diff(map[string]core.Change{
		"password": {From: "old-secret", To: "new-secret"},
		"email":    {From: "ada@example.com", To: "ada@example.org"},
	})
	fmt.Printf("password: %v -> %v\n", diff["password"].From, diff["password"].To)
	fmt.Printf("email: %v -> %v\n", diff["email"].From, diff["email"].To)
	// Output:
	// password: [REDACTED] -> [REDACTED]
	// email: ada@example.com -> ada@example.org
}

func ExampleRedactor_Text() {
	r := core.NewRedactor(nil, nil)
	fmt.Println(r.Text("login user=ada password=hunter2 from 10.0.0.1"))
	fmt.Println(r.Text(`{"user":"ada","client_secret":"s3cr`))
	fmt.Println(r.Text("dial postgres://app:pw@db:5432/app: timeout"))
	fmt.Println(r.Text("upstream call with Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"))
	// Output:
	// login user=ada password=[REDACTED] from 10.0.0.1
	// {"user":"ada","client_secret":"[REDACTED]
	// dial postgres://app:[REDACTED]@db:5432/app: timeout
	// upstream call with Bearer [REDACTED]
}

func ExampleRedactor_Body() {
	r := core.NewRedactor(nil, nil)
	bodies := []*core.Body{
		{ContentType: "application/json", Data: []byte(`{"user":"ada","password":"hunter2"}`), Size: 35},
		{ContentType: "application/x-www-form-urlencoded", Data: []byte("user=ada&token=t&tag=a&tag=b"), Size: 28},
		{ContentType: "text/plain", Data: []byte("api_key=abc123 and more"), Size: 4096, Truncated: true},
		{ContentType: "image/png", Data: []byte("\x89PNG..."), Size: 20480},
	}
	for _, b := range bodies {
		fmt.Println(string(r.Body(b)))
	}
	// Output:
	// {"password":"[REDACTED]","user":"ada"}
	// {"tag":["a","b"],"token":"[REDACTED]","user":"ada"}
	// {"content_type":"text/plain","size":4096,"truncated":true,"text":"api_key=[REDACTED] and [truncated]"}
	// {"content_type":"image/png","size":20480,"omitted":"binary"}
}

func ExampleRedactor_Header() {
	r := core.NewRedactor(nil, nil)
	h := http.Header{}
	h.Set("Authorization", "Bearer abc")
	h.Set("X-Api-Key", "k-123")
	h.Set("Accept", "application/json")
	out := r.Header(h)
	fmt.Println(out["Authorization"], out["X-Api-Key"], out["Accept"])
	// Output:
	// [[REDACTED]] [[REDACTED]] [application/json]
}

func ExampleRedactor_Sensitive() {
	r := core.NewRedactor(nil, []string{"token_count"})
	for _, k := range []string{"newPassword", "X-API-Key", "client-secret", "token_count", "email"} {
		fmt.Println(k, r.Sensitive(k))
	}
	// Output:
	// newPassword true
	// X-API-Key true
	// client-secret true
	// token_count false
	// email false
}

func ExampleSanitize() {
	fmt.Printf("%+q\n", core.Sanitize("a\x00b\xffc"))
	// Output:
	// "ab\ufffdc"
}

func ExampleParseTag() {
	type User struct {
		Email        string
		PasswordHash string `audit:"redact"`
		Avatar       []byte `audit:"-"`
		Note         string `audit:"mask"`
	}
	t := reflect.TypeFor[User]()
	for i := range t.NumField() {
		f := t.Field(i)
		p, err := core.ParseTag(f.Tag.Get(core.TagName))
		switch {
		case err != nil:
			fmt.Println(f.Name, "error:", err)
		case p.Omit:
			fmt.Println(f.Name, "left out")
		case p.Redact:
			fmt.Println(f.Name, "stored as", core.Redacted)
		default:
			fmt.Println(f.Name, "stored")
		}
	}
	// Output:
	// Email stored
	// PasswordHash stored as [REDACTED]
	// Avatar left out
	// Note error: invalid audit struct tag "mask": unknown option "mask" (want "-" or "redact")
}
