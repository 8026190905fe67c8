package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// memBackend is a Backend in memory, for the Store's own logic; the real
// one, Embedded, is tested below and in embedded_test.go.
type memBackend struct {
	mu      sync.Mutex
	data    map[[2]string]json.RawMessage
	failPut error
	watch   func(sink, instance string, raw json.RawMessage)
	// duringLoad runs inside Load, before the records are handed over.
	duringLoad func()
	closed     bool
}

func newMem() *memBackend { return &memBackend{data: map[[2]string]json.RawMessage{}} }

func (m *memBackend) Load(ctx context.Context, fn func(sink, instance string, raw json.RawMessage) error) error {
	if m.duringLoad != nil {
		m.duringLoad()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range m.data {
		if err := fn(k[0], k[1], append(json.RawMessage(nil), v...)); err != nil {
			return err
		}
	}
	return nil
}

func (m *memBackend) Put(ctx context.Context, sink, instance string, raw json.RawMessage) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failPut != nil {
		return m.failPut
	}
	m.data[[2]string{sink, instance}] = append(json.RawMessage(nil), raw...)
	return nil
}

func (m *memBackend) Delete(ctx context.Context, sink, instance string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data, [2]string{sink, instance})
	return nil
}

func (m *memBackend) Watch(fn func(sink, instance string, raw json.RawMessage)) { m.watch = fn }

func (m *memBackend) Close() error { m.closed = true; return nil }

func (m *memBackend) stored(sink, instance string) (json.RawMessage, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.data[[2]string{sink, instance}]
	return v, ok
}

func quietLogger(buf *bytes.Buffer) Option {
	return WithLogger(hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Trace}))
}

func mustOpen(t *testing.T, b Backend) *Store {
	t.Helper()
	s, err := Open(context.Background(), b, quietLogger(&bytes.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSet(t *testing.T, s *Store, sink, instance, raw string) Settings {
	t.Helper()
	st, err := s.Set(context.Background(), sink, instance, json.RawMessage(raw))
	if err != nil {
		t.Fatalf("Set(%s, %s, %s): %v", sink, instance, raw, err)
	}
	return st
}

func TestSetThenGet(t *testing.T) {
	b := newMem()
	s := mustOpen(t, b)
	st := mustSet(t, s, "webhook", "inst1", "{\n  \"url\": \"https://x\",\n  \"enabled\": true,\n  \"events\": [\"MESSAGES_UPSERT\"]\n}")
	const compact = `{"url":"https://x","enabled":true,"events":["MESSAGES_UPSERT"]}`
	if string(st.Raw) != compact {
		t.Errorf("Set returned %s, want %s", st.Raw, compact)
	}
	got, ok := s.Get("webhook", "inst1")
	if !ok || string(got.Raw) != compact || !got.Wants("MESSAGES_UPSERT") || got.Wants("CALL") {
		t.Errorf("Get = %+v, %v", got, ok)
	}
	if raw, _ := b.stored("webhook", "inst1"); string(raw) != compact {
		t.Errorf("backend holds %s", raw)
	}
	if _, ok := s.Get("webhook", "other"); ok {
		t.Error("Get of an unset instance found something")
	}
	if _, ok := s.Get("rabbitmq", "inst1"); ok {
		t.Error("Get of another sink found something")
	}
}

func TestSetCopiesRaw(t *testing.T) {
	s := mustOpen(t, newMem())
	raw := []byte(`{"enabled":true}`)
	if _, err := s.Set(context.Background(), "nats", "i", raw); err != nil {
		t.Fatal(err)
	}
	copy(raw, `{"enabled":null}`)
	if got, _ := s.Get("nats", "i"); string(got.Raw) != `{"enabled":true}` {
		t.Errorf("the caller's buffer changed the stored settings: %s", got.Raw)
	}
}

func TestSetRejects(t *testing.T) {
	b := newMem()
	s := mustOpen(t, b)
	for _, tc := range []struct{ sink, instance, raw string }{
		{"webhook", "i", `null`},
		{"webhook", "i", `[1]`},
		{"webhook", "i", `{"enabled":`},
		{"webhook", "i", `{"enabled":"yes"}`},
		{"", "i", `{"enabled":true}`},
		{"webhook", "", `{"enabled":true}`},
	} {
		_, err := s.Set(context.Background(), tc.sink, tc.instance, json.RawMessage(tc.raw))
		if err == nil || !strings.HasPrefix(err.Error(), "store: ") {
			t.Errorf("Set(%q, %q, %s): err = %v", tc.sink, tc.instance, tc.raw, err)
		}
	}
	if len(b.data) != 0 {
		t.Errorf("rejected settings reached the backend: %v", b.data)
	}
}

// TestSetPersistsFirst: when the backend fails, memory keeps the old
// settings, so nothing is ever shown that was not stored.
func TestSetPersistsFirst(t *testing.T) {
	b := newMem()
	s := mustOpen(t, b)
	mustSet(t, s, "sqs", "i", `{"enabled":true}`)

	b.failPut = errors.New("disk full")
	_, err := s.Set(context.Background(), "sqs", "i", json.RawMessage(`{"enabled":false}`))
	if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.HasPrefix(err.Error(), "store: set sqs/i: ") {
		t.Fatalf("err = %v", err)
	}
	if got, _ := s.Get("sqs", "i"); !got.Enabled {
		t.Error("memory shows settings the backend refused")
	}
	if _, err := s.Set(context.Background(), "sqs", "new", json.RawMessage(`{"enabled":true}`)); err == nil {
		t.Fatal("Set succeeded with a failing backend")
	}
	if _, ok := s.Get("sqs", "new"); ok {
		t.Error("memory shows new settings the backend refused")
	}
	if err := s.Disable(context.Background(), "sqs", "i", "x"); err == nil {
		t.Fatal("Disable succeeded with a failing backend")
	}
	if got, _ := s.Get("sqs", "i"); !got.Enabled {
		t.Error("memory shows a Disable the backend refused")
	}
}

func TestDisable(t *testing.T) {
	b := newMem()
	s := mustOpen(t, b)
	mustSet(t, s, "webhook", "i", `{"url":"https://x","enabled":true,"events":["CALL"]}`)
	before := time.Now().UTC().Truncate(time.Second)

	if err := s.Disable(context.Background(), "webhook", "i", `invalid "url": 404`); err != nil {
		t.Fatal(err)
	}
	got, ok := s.Get("webhook", "i")
	if !ok || got.Enabled || got.Wants("CALL") {
		t.Fatalf("after Disable: %+v", got)
	}
	var obj map[string]any
	if err := json.Unmarshal(got.Raw, &obj); err != nil {
		t.Fatal(err)
	}
	if obj["url"] != "https://x" || !reflect.DeepEqual(obj["events"], []any{"CALL"}) {
		t.Errorf("Disable lost other fields: %s", got.Raw)
	}
	if obj[DisabledReasonKey] != `invalid "url": 404` {
		t.Errorf("%s = %v", DisabledReasonKey, obj[DisabledReasonKey])
	}
	at, err := time.Parse(time.RFC3339, fmt.Sprint(obj[DisabledAtKey]))
	if err != nil || at.Before(before) {
		t.Errorf("%s = %v (%v)", DisabledAtKey, obj[DisabledAtKey], err)
	}
	if raw, _ := b.stored("webhook", "i"); !bytes.Equal(raw, got.Raw) {
		t.Errorf("backend holds %s, memory %s", raw, got.Raw)
	}

	// Enabling again (say, a client echoes what find returned) drops the
	// stale reason; storing it disabled keeps it.
	kept := mustSet(t, s, "webhook", "i", string(got.Raw))
	if !bytes.Contains(kept.Raw, []byte(DisabledReasonKey)) {
		t.Errorf("a disabled Set dropped the reason: %s", kept.Raw)
	}
	echoed := bytes.Replace(got.Raw, []byte(`"enabled":false`), []byte(`"enabled":true`), 1)
	re := mustSet(t, s, "webhook", "i", string(echoed))
	if !re.Enabled || bytes.Contains(re.Raw, []byte("disabled_")) {
		t.Errorf("re-enabled settings: %s", re.Raw)
	}

	err = s.Disable(context.Background(), "webhook", "nobody", "x")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Disable of missing settings: err = %v, want ErrNotFound", err)
	}
}

func TestDeleteAndInstances(t *testing.T) {
	b := newMem()
	s := mustOpen(t, b)
	for _, i := range []string{"c", "a", "b"} {
		mustSet(t, s, "nats", i, `{"enabled":true}`)
	}
	mustSet(t, s, "sqs", "z", `{"enabled":false}`)
	if got := s.Instances("nats"); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("Instances(nats) = %v", got)
	}
	if got := s.Instances("sqs"); !reflect.DeepEqual(got, []string{"z"}) {
		t.Errorf("Instances(sqs) = %v: disabled settings are still settings", got)
	}
	if got := s.Instances("pusher"); len(got) != 0 {
		t.Errorf("Instances(pusher) = %v", got)
	}
	if err := s.Delete(context.Background(), "nats", "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(context.Background(), "nats", "never"); err != nil {
		t.Errorf("Delete of missing settings: %v", err)
	}
	if _, ok := s.Get("nats", "b"); ok {
		t.Error("deleted settings still in memory")
	}
	if _, ok := b.stored("nats", "b"); ok {
		t.Error("deleted settings still in the backend")
	}
	if got := s.Instances("nats"); !reflect.DeepEqual(got, []string{"a", "c"}) {
		t.Errorf("Instances(nats) = %v", got)
	}
}

func TestOpenLoadsAndSkipsBadRecords(t *testing.T) {
	b := newMem()
	b.data[[2]string{"webhook", "good"}] = json.RawMessage(`{"enabled":true}`)
	b.data[[2]string{"webhook", "bad"}] = json.RawMessage(`{"enabled":"maybe"}`)
	var logs bytes.Buffer
	s, err := Open(context.Background(), b, quietLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Get("webhook", "good"); !ok || !got.Enabled {
		t.Errorf("good record: %+v %v", got, ok)
	}
	if _, ok := s.Get("webhook", "bad"); ok {
		t.Error("bad record loaded")
	}
	if out := logs.String(); !strings.Contains(out, "stored settings skipped") || !strings.Contains(out, "instance=bad") {
		t.Errorf("bad record not reported; log: %q", out)
	}
}

type failingLoad struct{ memBackend }

func (f *failingLoad) Load(context.Context, func(string, string, json.RawMessage) error) error {
	return errors.New("connection refused")
}

func TestOpenFails(t *testing.T) {
	f := &failingLoad{memBackend: *newMem()}
	_, err := Open(context.Background(), f)
	if err == nil || err.Error() != "store: load: connection refused" {
		t.Errorf("err = %v", err)
	}
	if f.closed {
		t.Error("a failed Open closed the caller's backend")
	}
}

// TestAnyEnabled: a sink is wanted while some instance's settings of it
// are enabled, through every way settings change.
func TestAnyEnabled(t *testing.T) {
	b := newMem()
	b.data[[2]string{"nats", "loaded"}] = json.RawMessage(`{"enabled":true}`)
	s := mustOpen(t, b)
	want := func(step string, sink string, any bool) {
		t.Helper()
		if got := s.AnyEnabled(sink); got != any {
			t.Errorf("%s: AnyEnabled(%s) = %v, want %v", step, sink, got, any)
		}
	}
	want("loaded", "nats", true)
	want("never set", "sqs", false)
	mustSet(t, s, "sqs", "a", `{"enabled":false}`)
	want("set disabled", "sqs", false)
	mustSet(t, s, "sqs", "a", `{"enabled":true}`)
	mustSet(t, s, "sqs", "b", `{"enabled":true}`)
	want("two enabled", "sqs", true)
	if err := s.Disable(context.Background(), "sqs", "a", "gone"); err != nil {
		t.Fatal(err)
	}
	want("one disabled", "sqs", true)
	mustSet(t, s, "sqs", "b", `{"enabled":false}`)
	want("both disabled", "sqs", false)
	mustSet(t, s, "sqs", "b", `{"enabled":true}`)
	if err := s.Delete(context.Background(), "sqs", "b"); err != nil {
		t.Fatal(err)
	}
	want("enabled one deleted", "sqs", false)
	b.watch("sqs", "c", json.RawMessage(`{"enabled":true}`))
	want("enabled by a replica", "sqs", true)
	b.watch("sqs", "c", nil)
	want("deleted by a replica", "sqs", false)
	if err := s.Delete(context.Background(), "nats", "loaded"); err != nil {
		t.Fatal(err)
	}
	want("loaded one deleted", "nats", false)
}

func TestRemoteChanges(t *testing.T) {
	b := newMem()
	var logs bytes.Buffer
	s, err := Open(context.Background(), b, quietLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if b.watch == nil {
		t.Fatal("Open did not register a watcher")
	}
	b.watch("rabbitmq", "i", json.RawMessage(`{"enabled":true,"events":["CALL"]}`))
	if got, ok := s.Get("rabbitmq", "i"); !ok || !got.Wants("CALL") {
		t.Errorf("remote set not applied: %+v %v", got, ok)
	}
	b.watch("rabbitmq", "i", json.RawMessage(`not json`))
	if got, ok := s.Get("rabbitmq", "i"); !ok || !got.Wants("CALL") {
		t.Errorf("a bad remote change replaced good settings: %+v %v", got, ok)
	}
	if !strings.Contains(logs.String(), "changed settings ignored") {
		t.Errorf("bad remote change not reported; log: %q", logs.String())
	}
	b.watch("rabbitmq", "i", nil)
	if _, ok := s.Get("rabbitmq", "i"); ok {
		t.Error("remote delete not applied")
	}
}

// TestRemoteChangeDuringLoadWins: a change heard while Open is loading is
// newer than what Load returns, and is applied after it.
func TestRemoteChangeDuringLoadWins(t *testing.T) {
	b := newMem()
	b.data[[2]string{"nats", "i"}] = json.RawMessage(`{"enabled":true}`)
	b.data[[2]string{"nats", "gone"}] = json.RawMessage(`{"enabled":true}`)
	b.duringLoad = func() {
		b.watch("nats", "i", json.RawMessage(`{"enabled":false}`))
		b.watch("nats", "gone", nil)
	}
	s := mustOpen(t, b)
	if got, ok := s.Get("nats", "i"); !ok || got.Enabled {
		t.Errorf("stale loaded value won: %+v", got)
	}
	if _, ok := s.Get("nats", "gone"); ok {
		t.Error("a delete heard during load was lost")
	}
}

func TestCloseClosesBackend(t *testing.T) {
	b := newMem()
	s := mustOpen(t, b)
	if err := s.Close(); err != nil || !b.closed {
		t.Errorf("Close: %v, backend closed %v", err, b.closed)
	}
}

// TestConcurrentGetDuringSet runs readers against writers; under -race it
// proves Get is safe, and each read must see one whole settings value.
func TestConcurrentGetDuringSet(t *testing.T) {
	s := mustOpen(t, newMem())
	values := []string{
		`{"enabled":true,"events":["MESSAGES_UPSERT"]}`,
		`{"enabled":false,"events":["CALL"]}`,
		`{"enabled":true}`,
	}
	mustSet(t, s, "webhook", "i", values[0])

	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 4)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, ok := s.Get("webhook", "i")
				if !ok {
					errs <- "settings vanished during Set"
					return
				}
				// Enabled and Events must belong to Raw.
				want, _ := Parse(st.Raw)
				if st.Enabled != want.Enabled || !reflect.DeepEqual(st.Events, want.Events) {
					errs <- fmt.Sprintf("torn read: %+v", st)
					return
				}
				s.Instances("webhook")
			}
		}()
	}
	var ww sync.WaitGroup
	for w := 0; w < 2; w++ {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for n := 0; n < 300; n++ {
				if _, err := s.Set(context.Background(), "webhook", "i", json.RawMessage(values[n%len(values)])); err != nil {
					errs <- err.Error()
					return
				}
				if _, err := s.Set(context.Background(), "webhook", fmt.Sprint("other", n), json.RawMessage(values[2])); err != nil {
					errs <- err.Error()
					return
				}
			}
		}()
	}
	ww.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestConcurrentWritesAgree: whatever order concurrent writers run in,
// memory ends equal to the backend.
func TestConcurrentWritesAgree(t *testing.T) {
	b := newMem()
	s := mustOpen(t, b)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 50; n++ {
				raw := fmt.Sprintf(`{"enabled":true,"w":%d,"n":%d}`, w, n)
				if _, err := s.Set(context.Background(), "sqs", "i", json.RawMessage(raw)); err != nil {
					t.Error(err)
					return
				}
				if n%10 == 0 {
					if err := s.Disable(context.Background(), "sqs", "i", "x"); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	got, _ := s.Get("sqs", "i")
	stored, _ := b.stored("sqs", "i")
	if !bytes.Equal(got.Raw, stored) {
		t.Errorf("memory %s, backend %s", got.Raw, stored)
	}
}

func TestGetDoesNotAllocate(t *testing.T) {
	s := mustOpen(t, newMem())
	mustSet(t, s, "webhook", "inst1", `{"enabled":true,"events":["MESSAGES_UPSERT"]}`)
	sink, instance := "webhook", "inst1"
	allocs := testing.AllocsPerRun(1000, func() {
		st, ok := s.Get(sink, instance)
		if !ok || !st.Wants("MESSAGES_UPSERT") {
			panic("lost")
		}
	})
	if allocs != 0 {
		t.Errorf("Get allocates %v times per call", allocs)
	}
}

func benchStore(b *testing.B) *Store {
	s, err := Open(context.Background(), newMem(), quietLogger(&bytes.Buffer{}))
	if err != nil {
		b.Fatal(err)
	}
	for sk := 0; sk < 6; sk++ {
		for i := 0; i < 1000; i++ {
			if _, err := s.Set(context.Background(), fmt.Sprint("sink", sk), fmt.Sprint("instance", i), json.RawMessage(`{"enabled":true,"events":["MESSAGES_UPSERT"]}`)); err != nil {
				b.Fatal(err)
			}
		}
	}
	return s
}

func BenchmarkGet(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		st, ok := s.Get("sink3", "instance500")
		if !ok || !st.Wants("MESSAGES_UPSERT") {
			b.Fatal("lost")
		}
	}
}

func BenchmarkGetParallel(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := s.Get("sink3", "instance500"); !ok {
				panic("lost")
			}
		}
	})
}
