package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/evorelay/evorelay/sdk/events"
)

// mediaEnvelope is a media message that carries only a mediaUrl.
func mediaEnvelope(mediaURL string) []byte {
	return []byte(`{"event":"MESSAGES_UPSERT","instance":"shop-1","data":{"key":{"id":"3EB0A1"},` +
		`"message":{"imageMessage":{"mimetype":"image/jpeg"},"mediaUrl":"` + mediaURL + `"},"messageType":"imageMessage"},` +
		`"date_time":"2024-01-01T12:00:00.000Z"}`)
}

// receivedData is data of the body a receiver got, as raw bytes.
func receivedData(t *testing.T, body []byte) []byte {
	t.Helper()
	var b struct{ Data json.RawMessage }
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	return b.Data
}

func TestBase64KeptOrStripped(t *testing.T) {
	env := envelope(t, "envelope_media.json")
	var e struct{ Data json.RawMessage }
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		settings string
		want     string
	}{
		{"kept", `"base64":true`, string(e.Data)},
		{"stripped", `"webhook_base64":false`,
			`{"key":{"id":"3EB0A1"},"message":{"imageMessage": {"mimetype": "image/jpeg"}, "mediaUrl":"https://s3.example.com/m/1.jpg"},"messageType":"imageMessage"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, nil)
			s := openSink(t, nil, events.NamingSeed)
			set := settings(t, s, `{"url":"`+rc.URL+`","enabled":true,"events":[],`+tc.settings+`}`)
			if err := deliver(t, s, delivery("d", "MESSAGES_UPSERT", env, set))["d"]; err != nil {
				t.Fatalf("outcome: %v", err)
			}
			if got := receivedData(t, rc.one(t).body); string(got) != tc.want {
				t.Errorf("data\n %s\nwant\n %s", got, tc.want)
			}
		})
	}
}

func TestBase64FromMediaURL(t *testing.T) {
	content := bytes.Repeat([]byte("\xff\xd8\xff jpeg "), 100)
	media := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		switch r.URL.Path {
		case "/chunked.jpg": // no Content-Length: the limit is found while reading
			w.Write(content[:10])
			w.(http.Flusher).Flush()
			w.Write(content[10:])
		case "/gone.jpg":
			http.NotFound(w, r)
		case "/busy.jpg":
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/moved.jpg":
			http.Redirect(w, r, "/photo.jpg", http.StatusFound)
		case "/to-metadata.jpg":
			http.Redirect(w, r, "http://169.254.169.254/latest", http.StatusFound)
		default:
			w.Write(content)
		}
	})
	want := `"` + base64.StdEncoding.EncodeToString(content) + `"`

	for _, tc := range []struct {
		name     string
		path     string // mediaUrl after the media server's address, or a whole URL
		maxBytes string // "", "len" or "len-1": the media's size, or one less
		attempt  int
		want     string // verdict kind
		inlined  bool
		fetched  int // requests the media server gets
	}{
		{"fetched", "/photo.jpg", "", 1, "ok", true, 1},
		{"fetched after a redirect", "/moved.jpg", "", 1, "ok", true, 2},
		{"at the size limit", "/photo.jpg", "len", 1, "ok", true, 1},
		{"over the size limit", "/photo.jpg", "len-1", 1, "ok", false, 1},
		{"over the size limit, no length", "/chunked.jpg", "len-1", 1, "ok", false, 1},
		{"not found", "/gone.jpg", "", 1, "ok", false, 1},
		{"busy, first attempt", "/busy.jpg", "", 1, "retry", false, 1},
		{"busy, second attempt", "/busy.jpg", "", 2, "retry", false, 1},
		{"busy, third attempt", "/busy.jpg", "", 3, "ok", false, 1},
		{"redirect to metadata", "/to-metadata.jpg", "", 1, "ok", false, 1},
		{"metadata url", "http://169.254.169.254/latest", "", 1, "ok", false, 0},
		{"not http", "file:///etc/passwd", "", 1, "ok", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, nil)
			process := map[string]string{}
			switch tc.maxBytes {
			case "len":
				process["media_max_bytes"] = strconv.Itoa(len(content))
			case "len-1":
				process["media_max_bytes"] = strconv.Itoa(len(content) - 1)
			}
			s := openSink(t, process, events.NamingSeed)
			mediaURL := tc.path
			if strings.HasPrefix(mediaURL, "/") {
				mediaURL = media.URL + mediaURL
			}
			set := settings(t, s, `{"url":"`+rc.URL+`","enabled":true,"events":[],"webhook_base64":true}`)
			d := delivery("d", "MESSAGES_UPSERT", mediaEnvelope(mediaURL), set)
			d.Attempt = tc.attempt
			err := deliver(t, s, d)["d"]
			if v := verdictOf(err); v.kind != tc.want {
				t.Fatalf("outcome %+v (%v), want %s", v, err, tc.want)
			}
			for i := 0; i < tc.fetched; i++ {
				media.one(t)
			}
			media.none(t)
			if tc.want == "retry" {
				if v := verdictOf(err); v.after.Seconds() != 30 {
					t.Errorf("retry after %v, want the media server's 30s", v.after)
				}
				rc.none(t) // held back, not sent without its media
				return
			}
			data := receivedData(t, rc.one(t).body)
			var got struct {
				Message map[string]json.RawMessage `json:"message"`
			}
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatal(err)
			}
			b64, has := got.Message["base64"]
			switch {
			case tc.inlined && string(b64) != want:
				t.Errorf("base64 %.60s…, want the media's (%d bytes)", b64, len(content))
			case !tc.inlined && has:
				t.Errorf("base64 %.60s… present, want none", b64)
			}
			if stringValue(got.Message["mediaUrl"]) != mediaURL {
				t.Errorf("mediaUrl %s, want it kept", got.Message["mediaUrl"])
			}
			if !tc.inlined && string(data) != string(receivedData(t, mediaEnvelope(mediaURL))) {
				t.Errorf("data changed without media: %s", data)
			}
		})
	}
}

func TestJSONEdit(t *testing.T) {
	for _, tc := range []struct {
		in, key, want string
	}{
		{`{"a":1,"base64":"x","b":2}`, "base64", `{"a":1,"b":2}`},
		{`{"base64":"x","b":2}`, "base64", `{"b":2}`},
		{`{ "base64" : "x" , "b":2}`, "base64", `{ "b":2}`},
		{`{"a":1,"base64":"x"}`, "base64", `{"a":1}`},
		{`{"base64":"x"}`, "base64", `{}`},
		{`{"base64":1,"a":[1,{"base64":2}],"base64":3}`, "base64", `{"a":[1,{"base64":2}]}`},
		{`{"a":"base64","b":{"base64":"x"}}`, "base64", `{"a":"base64","b":{"base64":"x"}}`},
		{"{\n  \"a\": 1,\n  \"base64\": \"x\",\n  \"c\": true\n}", "base64", "{\n  \"a\": 1,\n  \"c\": true\n}"},
		{"{\n  \"base64\": \"x\",\n  \"c\": true\n}", "base64", "{\n  \"c\": true\n}"},
		{`{ "base64":"x" }`, "base64", `{  }`},
		{`{"base64":1,"base64":2,"c":3}`, "base64", `{"c":3}`},
		{`{"base64":1,"base64":2}`, "base64", `{}`},
		{`{"a":1e5,"base64":null}`, "base64", `{"a":1e5}`},
	} {
		ms, ok := members([]byte(tc.in))
		if !ok {
			t.Errorf("members(%s) failed", tc.in)
			continue
		}
		got := without([]byte(tc.in), ms, tc.key)
		if string(got) != tc.want {
			t.Errorf("without(%s, %s) = %s, want %s", tc.in, tc.key, got, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("without(%s) is not JSON: %s", tc.in, got)
		}
	}
	for _, bad := range []string{`[1]`, `{"a":}`, `{"a":1} x`, `{"a":1}{}`, `"s"`, ``} {
		if _, ok := members([]byte(bad)); ok {
			t.Errorf("members(%q) accepted it", bad)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{`{}`, `{"base64":"QQ=="}`},
		{`{"a":1}`, `{"a":1,"base64":"QQ=="}`},
		{"{\"a\":1\n}", "{\"a\":1,\"base64\":\"QQ==\"\n}"},
	} {
		ms, _ := members([]byte(tc.in))
		if got := with([]byte(tc.in), ms, "base64", []byte(`"QQ=="`)); string(got) != tc.want {
			t.Errorf("with(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
