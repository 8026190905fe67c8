package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// shape is how a scenario's events are spread and posted.
type shape struct {
	instances int // instances, one ordered lane each
	chats     int // chats (data.key.remoteJid) per instance
	posters   int // keep-alive connections posting at once
	perPost   int // events per ingest request
}

// load is the n events of one scenario, numbered 0 … n-1: event i belongs
// to instance i mod instances and, within it, to chat (i / instances) mod
// chats, and carries "seq-i" as its data.key.id.
type load struct {
	shape
	scenario string
	n        int
	names    []string // instance names
}

// newLoad is the load of a scenario, with the shape flags applied.
func newLoad(scenario string, sh shape, n int) load {
	for _, f := range []struct {
		arg *int
		to  *int
	}{{instancesArg, &sh.instances}, {chatsArg, &sh.chats}, {postersArg, &sh.posters}, {batchArg, &sh.perPost}} {
		if *f.arg > 0 {
			*f.to = *f.arg
		}
	}
	if scenario == "paced" {
		sh.perPost = 1 // by definition
	}
	l := load{shape: sh, scenario: scenario, n: n}
	for i := range sh.instances {
		l.names = append(l.names, fmt.Sprintf("bench%d", i))
	}
	return l
}

func (l load) describe() string {
	per := "one event a POST"
	if l.perPost > 1 {
		per = fmt.Sprintf("arrays of %d", l.perPost)
	}
	return fmt.Sprintf("%s × %s, %s from %s, %d events of %d B data",
		plural(l.instances, "instance"), plural(l.chats, "chat"), per, plural(l.posters, "connection"), l.n, *size)
}

// plural is "1 chat", "16 chats".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func (l load) instance(i int) string { return l.names[i%len(l.names)] }

// padding is the message text that makes an event -size bytes of data,
// quoted once: making the bodies stays cheap beside what is measured.
var padding = sync.OnceValue(func() string { return strconv.Quote(strings.Repeat("x", *size)) })

// data is event i's data: a message of its instance's chat.
func (l load) data(i int) string {
	chat := (i / len(l.names)) % l.chats
	return fmt.Sprintf(`{"key":{"remoteJid":"55119%08d@s.whatsapp.net","fromMe":false,"id":"seq-%d"},"pushName":"bench","message":{"conversation":%s}}`,
		chat, i, padding())
}

// ingestRequests are the bodies an engine posts for the load: perPost
// events each, in order.
func (l load) ingestRequests() []request {
	var reqs []request
	for first := 0; first < l.n; first += l.perPost {
		var b bytes.Buffer
		if l.perPost > 1 {
			b.WriteByte('[')
		}
		for i := first; i < min(first+l.perPost, l.n); i++ {
			if i > first {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"event":"messages.upsert","instance":%q,"data":%s}`, l.instance(i), l.data(i))
		}
		if l.perPost > 1 {
			b.WriteByte(']')
		}
		reqs = append(reqs, request{body: b.Bytes(), first: first})
	}
	return reqs
}

// webhookRequests are the bodies the webhook plugin sends to url for the
// load, one event each, with the webhook-id of each.
func (l load) webhookRequests(url string) []request {
	reqs := make([]request, l.n)
	for i := range reqs {
		body := fmt.Appendf(nil, `{"event":"MESSAGES_UPSERT","instance":%q,"data":%s,"destination":%q,"date_time":"2024-01-01T12:00:00.000Z","sender":null,"server_url":null,"apikey":null}`,
			l.instance(i), l.data(i), url)
		reqs[i] = request{body: body, id: strconv.Itoa(i), first: i}
	}
	return reqs
}

// envelope is the body a broker sink publishes for event i: the envelope
// the host builds, with the event named as EVORELAY_NAMING=seed names it.
func (l load) envelope(i int) []byte {
	return fmt.Appendf(nil, `{"event":"MESSAGES_UPSERT","instance":%q,"data":%s,"date_time":"2024-01-01T12:00:00.000Z","sender":"","server_url":"","apikey":""}`, l.instance(i), l.data(i))
}

// request is one POST of a load.
type request struct {
	body  []byte
	id    string // webhook-id, if any
	first int    // the number of its first event
}

// target is where a poster sends its requests and what it must answer.
type target struct {
	url    string
	header http.Header
	want   int // the status every request must get
}

// newPostClient is a client of n keep-alive connections to one host.
func newPostClient(n int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n, DisableCompression: true}}
}

// postOne sends one request and checks its answer.
func postOne(ctx context.Context, client *http.Client, t target, r request) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(r.body))
	if err != nil {
		return err
	}
	for k, v := range t.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	if r.id != "" {
		req.Header["webhook-id"] = []string{r.id}
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != t.want {
		return fmt.Errorf("POST %s: %d %s, want %d", t.url, resp.StatusCode, bytes.TrimSpace(body), t.want)
	}
	return nil
}

// post sends reqs to t from posters keep-alive connections, each taking
// the next request when its last is answered, and returns once every one
// was answered t.want, with how long that took.
func post(ctx context.Context, t target, reqs []request, posters int) (time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	client := newPostClient(posters)
	defer client.CloseIdleConnections()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range posters {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(reqs) {
					return
				}
				if err := postOne(ctx, client, t, reqs[i]); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
