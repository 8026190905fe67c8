package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestMediaFields(t *testing.T) {
	tests := []struct {
		data string
		want []string // paths, in document order
	}{
		{`{"message":{"conversation":"hi"}}`, nil},
		{`{"message":{"base64":"QUJD"}}`, []string{"data.message.base64"}},
		{`{"message":{"base64":null}}`, nil}, // already null: nothing to remove
		{`{"message":{"imageMessage":{"jpegThumbnail":"AA","caption":"x"},"base64":"QQ"}}`,
			[]string{"data.message.imageMessage.jpegThumbnail", "data.message.base64"}},
		{`{"messages":[{"message":{"stickerMessage":{"pngThumbnail":"AA"}}},{"message":{"base64":"QQ"}}]}`,
			[]string{"data.messages.0.message.stickerMessage.pngThumbnail", "data.messages.1.message.base64"}},
		{`{"message":{"extendedTextMessage":{"contextInfo":{"quotedMessage":{"imageMessage":{"jpegThumbnail":"AA"}}}}}}`,
			[]string{"data.message.extendedTextMessage.contextInfo.quotedMessage.imageMessage.jpegThumbnail"}},
		{` { "message" : { "base64" : "QQ" } } `, []string{"data.message.base64"}},
		{`["base64"]`, nil},
		{`"base64"`, nil},
		{`null`, nil},
	}
	for _, tt := range tests {
		fs := mediaFields(json.RawMessage(tt.data), "data")
		var got []string
		for _, f := range fs {
			got = append(got, f.path)
			if v := tt.data[f.start:f.end]; !strings.HasPrefix(v, `"`) || !strings.HasSuffix(v, `"`) {
				t.Errorf("%s: span of %s is %q, not the string value", tt.data, f.path, v)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("mediaFields(%s) = %v, want %v", tt.data, got, tt.want)
		}
	}
}

// TestNullifyInAnyOrder removes members in an order other than the
// document's, which moves the spans of those after each removal.
func TestNullifyInAnyOrder(t *testing.T) {
	data := json.RawMessage(`{"a":{"jpegThumbnail":"` + strings.Repeat("t", 30) + `"},"message":{"base64":"` + strings.Repeat("b", 10) + `"},"z":{"thumbnail":"` + strings.Repeat("z", 20) + `"}}`)
	fs := mediaOrder(mediaFields(data, "data"))
	var order []string
	for i, f := range fs {
		order = append(order, f.path)
		data = nullify(data, f, fs[i+1:])
		if !json.Valid(data) {
			t.Fatalf("after removing %s: not JSON: %s", f.path, data)
		}
	}
	if want := []string{"data.message.base64", "data.a.jpegThumbnail", "data.z.thumbnail"}; !slices.Equal(order, want) {
		t.Errorf("removal order %v, want %v (base64 first, then the largest)", order, want)
	}
	if want := `{"a":{"jpegThumbnail":null},"message":{"base64":null},"z":{"thumbnail":null}}`; string(data) != want {
		t.Errorf("got %s, want %s", data, want)
	}
}
