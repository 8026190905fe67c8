package api

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/evorelay/evorelay/host/spool"
)

// fakeDead records what the routes asked of the dead-letter store.
type fakeDead struct {
	list  []spool.DeadLetter
	calls []string
}

func (f *fakeDead) DeadLetters(sink, instance string, limit int, before string) ([]spool.DeadLetter, error) {
	f.calls = append(f.calls, fmt.Sprintf("list %s %s %d %q", sink, instance, limit, before))
	return f.list[:min(limit, len(f.list))], nil
}

func (f *fakeDead) Replay(sink, instance string, ids []string) (int, error) {
	f.calls = append(f.calls, fmt.Sprintf("replay %s %s %v", sink, instance, ids))
	return len(ids) + 7*boolInt(len(ids) == 0), nil
}

func (f *fakeDead) Discard(sink, instance string, ids []string) (int, error) {
	f.calls = append(f.calls, fmt.Sprintf("discard %s %s %v", sink, instance, ids))
	return len(ids), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestDeadLetterRoutes(t *testing.T) {
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	dead := &fakeDead{}
	for i := 3; i > 0; i-- {
		dead.list = append(dead.list, spool.DeadLetter{
			Sink: "webhook", ID: fmt.Sprintf("D%d", i), Instance: "acme", Event: "MESSAGES_UPSERT",
			Attempts: 2, Reason: "HTTP 400", FirstTry: at, FailedAt: at, Envelope: []byte(`{"event":"MESSAGES_UPSERT"}`),
		})
	}
	f := newFixture(t, func(o *Options) { o.DeadLetters = dead })

	expect(t, f.do("GET", "/webhook/deadletters/acme?limit=2", ""), 200,
		`{"deadletters":[`+
			`{"sink":"webhook","id":"D3","instance":"acme","event":"MESSAGES_UPSERT","attempts":2,"reason":"HTTP 400","first_attempt_at":"2024-01-02T03:04:05Z","failed_at":"2024-01-02T03:04:05Z","envelope":{"event":"MESSAGES_UPSERT"}},`+
			`{"sink":"webhook","id":"D2","instance":"acme","event":"MESSAGES_UPSERT","attempts":2,"reason":"HTTP 400","first_attempt_at":"2024-01-02T03:04:05Z","failed_at":"2024-01-02T03:04:05Z","envelope":{"event":"MESSAGES_UPSERT"}}`+
			`],"next":"D2"}`+"\n")
	expect(t, f.do("GET", "/webhook/deadletters/acme", ""), 200, strings.Replace(
		f.do("GET", "/webhook/deadletters/acme", "").body, `"next":"D1"`, `"next":""`, 1))
	expect(t, f.do("POST", "/webhook/deadletters/acme/replay", `{"ids":["D1","D2"]}`), 200, `{"replayed":2}`+"\n")
	expect(t, f.do("POST", "/webhook/deadletters/acme/replay", ""), 200, `{"replayed":7}`+"\n")
	expect(t, f.do("DELETE", "/webhook/deadletters/acme", `{"ids":["D3"]}`), 200, `{"discarded":1}`+"\n")

	want := []string{
		`list webhook acme 3 ""`, `list webhook acme 51 ""`, `list webhook acme 51 ""`,
		`replay webhook acme [D1 D2]`, `replay webhook acme []`, `discard webhook acme [D3]`,
	}
	if fmt.Sprint(dead.calls) != fmt.Sprint(want) {
		t.Fatalf("calls\n%v\nwant\n%v", dead.calls, want)
	}

	for _, c := range []struct{ method, path, body, mentions string }{
		{"GET", "/webhook/deadletters/acme?limit=0", "", "limit"},
		{"GET", "/webhook/deadletters/acme?limit=x", "", "limit"},
		{"POST", "/webhook/deadletters/acme/replay", `{"id":["D1"]}`, "ids"},
		{"DELETE", "/webhook/deadletters/acme", `[`, "ids"},
	} {
		msgs := expectError(t, f.do(c.method, c.path, c.body), 400)
		if !strings.Contains(strings.Join(msgs, " "), c.mentions) {
			t.Errorf("%s %s: %v does not mention %q", c.method, c.path, msgs, c.mentions)
		}
	}
	expectError(t, f.doKey("GET", "/webhook/deadletters/acme", "", ""), 401)
	expectError(t, f.doKey("POST", "/webhook/deadletters/acme/replay", "", "wrong"), 401)
}

// Mistakes in a dead-letter request are the client's: 400 or 413, never a
// 503, and never a wider action than asked for.
func TestDeadLetterMistakes(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	if err := sp.Register("webhook"); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) { o.DeadLetters = sp })
	msgs := expectError(t, f.do("GET", "/webhook/deadletters/acme?before=garbage", ""), 400)
	if !strings.Contains(strings.Join(msgs, " "), "before") {
		t.Errorf("a garbage cursor: %v does not name before", msgs)
	}

	dead := &fakeDead{}
	f = newFixture(t, func(o *Options) { o.DeadLetters = dead })
	for _, c := range []struct{ method, path string }{
		{"DELETE", "/webhook/deadletters/acme"},
		{"POST", "/webhook/deadletters/acme/replay"},
	} {
		for _, body := range []string{`{"ids":[]}`, `{}`, `{"ids":null}`} {
			msgs := expectError(t, f.do(c.method, c.path, body), 400)
			if !strings.Contains(strings.Join(msgs, " "), "ids") {
				t.Errorf("%s %s %s: %v does not name ids", c.method, c.path, body, msgs)
			}
		}
	}
	huge := `{"ids":["` + strings.Repeat("D", 2<<20) + `"]}`
	expectError(t, f.do("DELETE", "/webhook/deadletters/acme", huge), 413)
	expectError(t, f.do("POST", "/webhook/deadletters/acme/replay", huge), 413)
	if len(dead.calls) != 0 {
		t.Fatalf("the store was asked %v; want nothing", dead.calls)
	}
}
