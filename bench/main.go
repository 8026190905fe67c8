// Command bench is evorelay's load tool. It measures, in one run and on
// the same destination, what a bare client achieves and what the sidecar
// achieves through its whole path (ingest → durable spool → plugin →
// destination), and prints each as events/s with its ratio to the bare
// baseline. It talks only to 127.0.0.1, and every loop is bounded by
// -events and -timeout.
//
//	make build && go run ./bench -events 20000
//	make build && go run ./bench -sink rabbitmq -events 20000 -batch 100
//	make build && go run ./bench -sink nats -events 20000 -batch 100
//	make build && go run ./bench -backend redis -events 20000
//
// -sink webhook (the default):
//
//	bare      a plain Go HTTP client POSTs the webhook body to the receiver,
//	          one worker per instance, each in order (as the sidecar does)
//	webhook   engine → POST /events → sidecar → webhook plugin → receiver
//	nosync    the same with EVORELAY_SPOOL_NOSYNC=true: the cost of fsync
//
// -backend redis (webhook; Redis at -redis-url, the machine's by default,
// under a prefix of the run's own that is deleted at its end):
//
//	bare      the bare HTTP client, as above
//	XADD      a plain go-redis client appends records of the same size to
//	          one stream, 64 XADDs pipelined a round trip per poster: what
//	          Redis alone takes in, the ceiling of ingest
//	embedded  engine → sidecar (embedded spool) → webhook plugin → receiver
//	redis     the same with EVORELAY_BACKEND=redis: the spool and the
//	          settings in Redis
//
// -sink rabbitmq (RabbitMQ at 127.0.0.1:5672, guest/guest):
//
//	bare      a plain amqp091-go client publishes the body the plugin would,
//	          with the same properties, to the same exchange and routing
//	          key, with publisher confirms, pipelined (1000 outstanding, the
//	          plugin's default), one channel per instance
//	sidecar   engine → POST /events → sidecar → rabbitmq plugin → broker
//
// -sink nats (NATS with JetStream at 127.0.0.1:4222):
//
//	bare      a plain nats.go client publishes the same body and headers on
//	          the same subject through JetStream, asynchronously with acks
//	          (1000 outstanding, the plugin's default), one per instance
//	sidecar   engine → POST /events → sidecar → nats plugin → stream
//
// -outage 10m (webhook only) measures a receiver that is down instead of
// throughput: attempts while down, dead letters left, and the order the
// backlog arrives in once it is back (see outage.go).
//
// For the brokers, both paths are counted the same way: by a consumer of
// the queues (or the stream) that sees every distinct message id arrive.
// The queues, exchanges and streams a run creates are deleted at its end.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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
	sinkName  = flag.String("sink", "webhook", "what to measure: webhook, rabbitmq or nats")
	events    = flag.Int("events", 20000, "events per scenario")
	instances = flag.Int("instances", 8, "instances (destinations, one ordered lane each)")
	posters   = flag.Int("posters", 16, "concurrent engine connections posting events")
	perPost   = flag.Int("batch", 1, "events per ingest request (an engine posts one)")
	size      = flag.Int("size", 1024, "bytes of data per event")
	binDir    = flag.String("bin", "bin", "where make build put evorelay and plugins/")
	timeout   = flag.Duration("timeout", 5*time.Minute, "give up on a scenario after this long")
	metrics   = flag.Bool("metrics", false, "print each sidecar's /metrics series of its sink before stopping it")
	outage    = flag.Duration("outage", 0, "with -sink webhook: instead of throughput, measure a receiver that answers 503 for this long, then comes back")
)

func main() {
	flag.Parse()
	data := fmt.Sprintf(`{"key":{"remoteJid":"5511999999999@s.whatsapp.net","id":"ABC"},"message":{"conversation":%q}}`, strings.Repeat("x", *size))
	fmt.Printf("evorelay load (%s): %d events of %d B data, %d instances, %d posters × %d events a request\n\n",
		*sinkName, *events, *size, *instances, *posters, *perPost)
	var err error
	switch *sinkName {
	case "webhook":
		switch {
		case *outage > 0:
			err = runOutage()
		case *backendName == "redis":
			err = runWebhookRedis(data)
		default:
			err = runWebhook(data)
		}
	case "rabbitmq":
		err = runRabbitMQ(data)
	case "nats":
		err = runNATS(data)
	default:
		err = fmt.Errorf("-sink %q: expected webhook, rabbitmq or nats", *sinkName)
	}
	check(err)
}

type result struct {
	delivered float64 // events/s end to end
	ingest    float64 // events/s accepted (202) by the sidecar
}

func report(name string, r, bare result, extra string) {
	fmt.Printf("%-44s %9.0f events/s  %5.2f× bare  %s\n", name, r.delivered, r.delivered/bare.delivered, extra)
}

// rate is -events over the time since start, in events/s.
func rate(start time.Time) float64 { return float64(*events) / time.Since(start).Seconds() }

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// runID names what one run creates on a broker, so that runs never meet.
func runID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// envelope is the body a sink publishes for one event: the envelope the
// host builds, with the event named as EVORELAY_NAMING=seed names it.
func envelope(instance, data string) []byte {
	return fmt.Appendf(nil, `{"event":"MESSAGES_UPSERT","instance":%q,"data":%s,"date_time":"2024-01-01T12:00:00.000Z","sender":"","server_url":"","apikey":""}`, instance, data)
}

// counter counts the distinct ids that arrived at a destination and says
// when all the expected ones have.
type counter struct {
	mu   sync.Mutex
	seen map[string]bool
	n    atomic.Int64
	all  chan struct{}
	want int64
}

func newCounter() *counter {
	c := &counter{}
	c.expect(0)
	return c
}

// expect starts a new count of n.
func (c *counter) expect(n int) {
	c.mu.Lock()
	c.seen, c.all, c.want = map[string]bool{}, make(chan struct{}), int64(n)
	c.n.Store(0)
	c.mu.Unlock()
}

// see records one arrival of id.
func (c *counter) see(id string) {
	c.mu.Lock()
	if !c.seen[id] {
		c.seen[id] = true
		if c.n.Add(1) == c.want {
			close(c.all)
		}
	}
	c.mu.Unlock()
}

// wait returns once every expected id arrived, or fails at -timeout.
func (c *counter) wait() error {
	select {
	case <-c.all:
		return nil
	case <-time.After(*timeout):
		return fmt.Errorf("only %d of %d events arrived within %s", c.n.Load(), c.want, *timeout)
	}
}

// sidecar is one evorelay process the tool started, with one plugin.
type sidecar struct {
	plugin string
	base   string
	dir    string
	cmd    *exec.Cmd
	client *http.Client
	logs   bytes.Buffer
}

const apiKey = "bench-key"

// startSidecar starts bin/evorelay on a free loopback port with only the
// named plugin, a fresh data dir and extra env, and waits until it is
// ready. stop ends it and removes its files.
func startSidecar(plugin string, env []string) (*sidecar, error) {
	dir, err := os.MkdirTemp("", "evorelay-bench-")
	if err != nil {
		return nil, err
	}
	s := &sidecar{plugin: plugin, dir: dir, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *posters * 2}}}
	plugins := filepath.Join(dir, "plugins")
	src, err := filepath.Abs(filepath.Join(*binDir, "plugins", "evorelay-sink-"+plugin))
	if err == nil {
		err = os.MkdirAll(plugins, 0o755)
	}
	if err == nil {
		err = os.Symlink(src, filepath.Join(plugins, "evorelay-sink-"+plugin))
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	s.base = "http://" + addr
	s.cmd = exec.Command(filepath.Join(*binDir, "evorelay"))
	s.cmd.Env = append(os.Environ(), "EVORELAY_ADDR="+addr, "EVORELAY_API_KEY="+apiKey,
		"EVORELAY_DATA_DIR="+filepath.Join(dir, "data"), "EVORELAY_PLUGIN_DIR="+plugins, "EVORELAY_LOG_LEVEL=warn")
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stderr = &s.logs
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := s.call("GET", "/readyz", nil); code == 200 {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("sidecar not ready: %s", s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *sidecar) stop() {
	if *metrics {
		s.printMetrics()
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	os.RemoveAll(s.dir)
}

// printMetrics prints the /metrics lines of the sidecar's sink (-metrics).
func (s *sidecar) printMetrics() {
	code, body := s.call("GET", "/metrics", nil)
	if code != http.StatusOK {
		fmt.Printf("GET /metrics: %d %s\n", code, body)
		return
	}
	fmt.Printf("\nGET /metrics, sink %s:\n", s.plugin)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.Contains(line, `sink="`+s.plugin+`"`) {
			fmt.Println(line)
		}
	}
	fmt.Println()
}

// call sends one request with the API key and returns the status and body.
func (s *sidecar) call(method, path string, body []byte) (int, []byte) {
	req, _ := http.NewRequest(method, s.base+path, bytes.NewReader(body))
	req.Header.Set("apikey", apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// set stores an instance's settings for the sidecar's plugin.
func (s *sidecar) set(sink, instance string, settings any) error {
	b, _ := json.Marshal(settings)
	if code, body := s.call("POST", "/"+sink+"/set/"+instance, b); code != 201 {
		return fmt.Errorf("set %s for %s: %d %s", sink, instance, code, body)
	}
	return nil
}

// ingest posts -events MESSAGES_UPSERT events, spread round-robin over
// the instances, from -posters connections in requests of -batch, as an
// engine would; it returns once every request was answered 202, with how
// long that took.
func (s *sidecar) ingest(ctx context.Context, data string, instance func(i int) string) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, *posters)
	start := time.Now()
	for range *posters {
		wg.Go(func() {
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
					fmt.Fprintf(&b, `{"event":"messages.upsert","instance":%q,"data":%s}`, instance(i), data)
				}
				b.WriteByte(']')
				if code, body := s.call("POST", "/events", b.Bytes()); code != 202 {
					errs <- fmt.Errorf("ingest: %d %s", code, body)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return time.Since(start), ctx.Err()
}

// measureSidecar ingests the events through s and waits until c counted
// them all at the destination.
func measureSidecar(s *sidecar, c *counter, data string, instance func(i int) string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c.expect(*events)
	start := time.Now()
	ingested, err := s.ingest(ctx, data, instance)
	if err != nil {
		return result{}, err
	}
	if err := c.wait(); err != nil {
		return result{}, err
	}
	return result{delivered: rate(start), ingest: float64(*events) / ingested.Seconds()}, nil
}
