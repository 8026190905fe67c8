// Command bench is evorelay's load tool. It measures, in one run and on
// the same receiver, what a bare client achieves and what the sidecar
// achieves through its whole path (ingest → durable spool → plugin →
// destination), and prints each as events/s with its ratio to the bare
// baseline. It talks only to 127.0.0.1, and every loop is bounded by
// -events and -timeout.
//
//	make build && go run ./bench -events 20000
//
// Scenarios:
//
//	bare      a plain Go HTTP client POSTs the webhook body to the receiver,
//	          one worker per instance, each in order (as the sidecar does)
//	webhook   engine → POST /events → sidecar → webhook plugin → receiver
//	nosync    the same with EVORELAY_SPOOL_NOSYNC=true: the cost of fsync
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	events    = flag.Int("events", 20000, "events per scenario")
	instances = flag.Int("instances", 8, "instances (webhook destinations, one ordered lane each)")
	posters   = flag.Int("posters", 16, "concurrent engine connections posting events")
	perPost   = flag.Int("batch", 1, "events per ingest request (an engine posts one)")
	size      = flag.Int("size", 1024, "bytes of data per event")
	binDir    = flag.String("bin", "bin", "where make build put evorelay and plugins/")
	timeout   = flag.Duration("timeout", 5*time.Minute, "give up on a scenario after this long")
)

func main() {
	flag.Parse()
	recv := newReceiver()
	defer recv.Close()
	data := fmt.Sprintf(`{"key":{"remoteJid":"5511999999999@s.whatsapp.net","id":"ABC"},"message":{"conversation":%q}}`, strings.Repeat("x", *size))

	fmt.Printf("evorelay load: %d events of %d B data, %d instances, %d posters × %d events a request\n\n",
		*events, *size, *instances, *posters, *perPost)
	bare, err := runBare(recv, data)
	check(err)
	report("bare client → receiver", bare, bare, "")
	for _, sc := range []struct {
		name string
		env  []string
	}{
		{"sidecar → webhook (durable)", nil},
		{"sidecar → webhook (EVORELAY_SPOOL_NOSYNC)", []string{"EVORELAY_SPOOL_NOSYNC=true"}},
	} {
		res, err := runSidecar(recv, data, sc.env)
		check(err)
		report(sc.name, res, bare, fmt.Sprintf("ingest %.0f events/s", res.ingest))
	}
}

type result struct {
	delivered float64 // events/s end to end
	ingest    float64 // events/s accepted (202) by the sidecar
}

func report(name string, r, bare result, extra string) {
	fmt.Printf("%-44s %9.0f events/s  %5.2f× bare  %s\n", name, r.delivered, r.delivered/bare.delivered, extra)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// receiver counts distinct webhook-ids.
type receiver struct {
	*http.Server
	url  string
	mu   sync.Mutex
	seen map[string]bool
	n    atomic.Int64
	all  chan struct{}
	want int64
}

func newReceiver() *receiver {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	r := &receiver{url: "http://" + l.Addr().String() + "/hook"}
	r.Server = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		id := req.Header.Get("webhook-id")
		r.mu.Lock()
		if !r.seen[id] {
			r.seen[id] = true
			if r.n.Add(1) == r.want {
				close(r.all)
			}
		}
		r.mu.Unlock()
	})}
	go func() { _ = r.Serve(l) }()
	return r
}

func (r *receiver) expect(n int) {
	r.mu.Lock()
	r.seen, r.all, r.want = map[string]bool{}, make(chan struct{}), int64(n)
	r.n.Store(0)
	r.mu.Unlock()
}

func (r *receiver) wait() error {
	select {
	case <-r.all:
		return nil
	case <-time.After(*timeout):
		return fmt.Errorf("only %d of %d events arrived within %s", r.n.Load(), r.want, *timeout)
	}
}

// runBare posts the body the webhook plugin would send, one worker per
// instance, each waiting for its answer before the next (ordered).
func runBare(recv *receiver, data string) (result, error) {
	recv.expect(*events)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := fmt.Sprintf(`{"event":"MESSAGES_UPSERT","instance":"i","data":%s,"destination":%q,"date_time":"2024-01-01T12:00:00.000Z","sender":null,"server_url":null,"apikey":null}`, data, recv.url)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, *instances)
	for w := range *instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < *events; i += *instances {
				req, _ := http.NewRequest("POST", recv.url, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("webhook-id", fmt.Sprint(i))
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	if err := recv.wait(); err != nil {
		return result{}, err
	}
	rate := float64(*events) / time.Since(start).Seconds()
	return result{delivered: rate, ingest: rate}, nil
}

// runSidecar starts evorelay with the webhook plugin, sets a webhook per
// instance, and posts the events as an engine would.
func runSidecar(recv *receiver, data string, env []string) (result, error) {
	dir, err := os.MkdirTemp("", "evorelay-bench-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	plugins := filepath.Join(dir, "plugins")
	check(os.MkdirAll(plugins, 0o755))
	src, err := filepath.Abs(filepath.Join(*binDir, "plugins", "evorelay-sink-webhook"))
	check(err)
	check(os.Symlink(src, filepath.Join(plugins, "evorelay-sink-webhook")))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	addr := l.Addr().String()
	l.Close()
	const key = "bench-key"
	cmd := exec.Command(filepath.Join(*binDir, "evorelay"))
	cmd.Env = append(os.Environ(), "EVORELAY_ADDR="+addr, "EVORELAY_API_KEY="+key,
		"EVORELAY_DATA_DIR="+filepath.Join(dir, "data"), "EVORELAY_PLUGIN_DIR="+plugins, "EVORELAY_LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, env...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	base := "http://" + addr
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *posters * 2}}
	call := func(method, path string, body []byte) (int, error) {
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		req.Header.Set("apikey", key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := call("GET", "/readyz", nil); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("sidecar not ready: %s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range *instances {
		set, _ := json.Marshal(map[string]any{"url": recv.url, "enabled": true, "events": []string{"MESSAGES_UPSERT"}})
		if code, err := call("POST", fmt.Sprintf("/webhook/set/bench%d", i), set); err != nil || code != 201 {
			return result{}, fmt.Errorf("set webhook: %d %v", code, err)
		}
	}

	recv.expect(*events)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, *posters)
	start := time.Now()
	for range *posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				first := int(next.Add(int64(*perPost))) - *perPost
				if first >= *events {
					return
				}
				var b bytes.Buffer
				b.WriteByte('[')
				for i := first; i < min(first+*perPost, *events); i++ {
					if i > first {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, `{"event":"messages.upsert","instance":"bench%d","data":%s}`, i%*instances, data)
				}
				b.WriteByte(']')
				code, err := call("POST", "/events", b.Bytes())
				if err != nil || code != 202 {
					errs <- fmt.Errorf("ingest: %d %v", code, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	ingested := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	if err := recv.wait(); err != nil {
		return result{}, err
	}
	return result{
		delivered: float64(*events) / time.Since(start).Seconds(),
		ingest:    float64(*events) / ingested.Seconds(),
	}, nil
}
