// Command bench is evorelay's load tool. It measures the loads of the
// performance goals (issue 11) in one run: for each, what a bare client achieves on the same
// destination, what the sidecar achieves through its whole path (ingest →
// durable spool → plugin → destination), and the ratio of the two, beside
// the goal. It talks only to 127.0.0.1, and every loop is bounded by
// -events (or -rate × -duration) and -timeout. It runs the binaries of
// make build from -bin; the bare baselines that must not share a process
// with the tool run in a copy of the tool itself (a hidden mode).
//
//	make build && go run ./bench                      # every scenario (make bench)
//	make build && go run ./bench -scenario engine,lane -events 5000
//	make build && go run ./bench -scenario paced -rate 5000 -duration 5s
//	make build && go run ./bench -scenario ingest -env EVORELAY_SPOOL_NOSYNC=true
//	make build && go run ./bench -backend redis -scenario engine,ingest
//	make build && go run ./bench -pprof /tmp/prof -scenario lane
//	make build && go run ./bench -outage 10m -events 10000 -instances 1
//	make build && go run ./bench -rounds 3            # median of three rounds
//
// Every event is a 1 KB (-size) MESSAGES_UPSERT numbered n: its
// data.key.id is "seq-n" and its data.key.remoteJid one of the chats of
// its instance. The webhook receiver counts distinct numbers (the brokers'
// consumers distinct message ids), so a retry is not counted twice. The scenarios (-scenario, comma-separated, or all):
//
//	engine    64 instances × 16 chats, one envelope a POST from 64
//	          keep-alive connections, webhook to a fast receiver in this
//	          process; bare: 64 keep-alive POSTers post the webhook's body
//	          to the same receiver. Delivered events/s (and ingest's rate);
//	          goal ≥ 0.5×. Between the two, a bare relay in a process of
//	          its own takes the same posts, answers each 202 at once and
//	          forwards its body from memory over 64 keep-alive connections
//	          (nothing durable, no plugin, no parsing): the most a relay of
//	          one POST in, one POST out gets here. Its ratio to bare bounds
//	          the sidecar's, and the sidecar's ratio to it is printed too
//	ingest    the same posts to a sidecar with the webhook plugin and no
//	          settings (nothing to deliver); bare: an HTTP server in a
//	          process of its own that reads the body and answers 200;
//	          goal ≥ 0.5×
//	lane      one instance, one chat, arrays of 100 from 4 connections (so
//	          that ingest is not what limits the lane; -posters 1 for one
//	          strictly ordered poster), webhook delivered; bare: one
//	          sequential keep-alive POSTer in a process of its own;
//	          goal ≥ 0.8×
//	paced     -rate (5,000) events/s offered at a steady pace for -duration
//	          (5s), one a POST, 64 instances × 16 chats, over up to 64
//	          connections, webhook delivered: the delivered rate, whether
//	          it kept up (≥ 98 % of the offered rate), and p50/p99 of
//	          ingest → delivered (from the start of an event's POST to its
//	          arrival at the receiver), also of the events posted after
//	          the first second (where a new process pays dearly for new
//	          memory, its first second of load held most of the slow
//	          deliveries until it warmed its heap at start: sdk/warm), and
//	          each event's two legs (POST → 202, 202 → arrival) in the
//	          first half second and after it; goal: kept up, p99 ≤ 50 ms
//	          (of all)
//	chats     one instance, 16 chats, arrays of 100 from 4 connections,
//	          webhook to a receiver that answers after -receiver-delay
//	          (10 ms), as a bot or a flow doing some work does; at most
//	          8,000 events; bare: 16 keep-alive POSTers, one a chat (the
//	          most an order per chat allows); then the same through the
//	          sidecar with the default "ordering": "chat" (goal ≥ 0.8×,
//	          ours), and on a sixteenth of the events with "ordering":
//	          "instance" (one request at a time)
//	rabbitmq  one instance, arrays of 100 from 4 connections, to RabbitMQ
//	          at 127.0.0.1:5672; bare: an amqp091-go client publishing the
//	          plugin's body and properties with publisher confirms, 1000
//	          outstanding (the plugin's window); goal ≥ 0.8×
//	nats      the same to NATS JetStream at 127.0.0.1:4222; bare: a nats.go
//	          client publishing asynchronously with acks, 1000 outstanding;
//	          goal ≥ 0.5×
//
// -instances, -chats, -posters and -batch, when given, replace those of
// every scenario. -env KEY=VALUE (repeatable) adds to every sidecar's
// environment (EVORELAY_SPOOL_NOSYNC=true, GOGC=400, ...). -backend redis
// runs every sidecar on the Redis at -redis-url, under a prefix of the
// run's own that is deleted at its end, and adds to ingest a bare
// pipelined XADD client: what Redis alone takes in.
//
// -rounds N measures each scenario N times, bare then evorelay each time,
// and the summary gives each scenario's median round (by ratio; paced by
// p99) and every round's figure: on a shared machine one round's ratio
// can be off by a third.
//
// -pprof DIR fetches, while each sidecar scenario runs, a CPU profile of
// -pprof-seconds from the host into DIR/host-<scenario>.pprof: every
// sidecar gets EVORELAY_DEBUG_ADDR=127.0.0.1:<free port>, and a host that
// serves no /debug/pprof there is reported, not fatal. The profile starts
// with the load; when the load ends first, the tool says so.
//
// -outage 10m (webhook) measures a receiver that is down instead of
// throughput: attempts while down, dead letters left, and the order the
// backlog arrives in once it is back (see outage.go).
//
// Every sidecar runs every plugin of -bin's plugins/, as the sidecar is
// deployed; only the scenario's sink has settings, so the others cost
// what a sink that no instance has set costs.
//
// Both paths start their clock with their requests or bodies already made
// (an engine has its events; the tool's cost of making them is not the
// sidecar's). After each rate, a line says where the CPU went per event,
// from /proc: the sidecar's host and its plugins, the load tool (this
// process and those it started: posters, receivers, consumers), the local
// brokers (nats-server, RabbitMQ, Redis), and the whole machine with how
// idle it was: a run whose machine was near 0 % idle was bound by CPU,
// and only fewer µs per event makes it faster.
//
// For the brokers, both paths are counted the same way: by a consumer of
// the queues (or the stream) that sees every distinct message id arrive.
// The queues, exchanges and streams a run creates are deleted at its end.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

var (
	scenarioList  = flag.String("scenario", "all", "what to measure, comma-separated: engine, ingest, lane, paced, chats, rabbitmq, nats, or all")
	events        = flag.Int("events", 60000, "events per scenario (paced offers -rate × -duration instead)")
	size          = flag.Int("size", 1024, "bytes of data per event")
	instancesArg  = flag.Int("instances", 0, "instances (one ordered lane each) in every scenario, instead of the scenario's own")
	chatsArg      = flag.Int("chats", 0, "chats (data.key.remoteJid) per instance in every scenario, instead of the scenario's own")
	postersArg    = flag.Int("posters", 0, "engine connections posting events in every scenario, instead of the scenario's own")
	batchArg      = flag.Int("batch", 0, "events per ingest request in every scenario but paced, instead of the scenario's own")
	paceRate      = flag.Int("rate", 5000, "paced: events/s offered")
	paceFor       = flag.Duration("duration", 5*time.Second, "paced: how long the rate is offered")
	receiverDelay = flag.Duration("receiver-delay", 10*time.Millisecond, "chats: how long the receiver takes to answer each request")
	binDir        = flag.String("bin", "bin", "where make build put evorelay and plugins/")
	timeout       = flag.Duration("timeout", 5*time.Minute, "give up on a scenario after this long")
	metrics       = flag.Bool("metrics", false, "print each sidecar's /metrics series of its sink before stopping it")
	outage        = flag.Duration("outage", 0, "instead of the scenarios: a webhook receiver that answers 503 for this long, then comes back")
	pprofDir      = flag.String("pprof", "", "fetch a CPU profile of the host during each sidecar scenario into this directory (host-<scenario>.pprof)")
	pprofSeconds  = flag.Int("pprof-seconds", 5, "with -pprof: seconds of each profile")
	rounds        = flag.Int("rounds", 1, "measure each scenario this many times (bare, then evorelay, each time); the summary gives the median round and every round's figure")
	sidecarEnv    []string
)

func init() {
	flag.Func("env", "KEY=VALUE added to every sidecar's environment (repeatable)", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("%q: expected KEY=VALUE", v)
		}
		sidecarEnv = append(sidecarEnv, v)
		return nil
	})
}

// scenario is one load of issue 11.
type scenario struct {
	name  string
	shape shape
	run   func(load) (row, error)
}

var scenarios = []scenario{
	{"engine", shape{instances: 64, chats: 16, posters: 64, perPost: 1}, runEngine},
	{"ingest", shape{instances: 64, chats: 16, posters: 64, perPost: 1}, runIngest},
	{"lane", shape{instances: 1, chats: 1, posters: 4, perPost: 100}, runLane},
	{"paced", shape{instances: 64, chats: 16, posters: 64, perPost: 1}, runPaced},
	{"chats", shape{instances: 1, chats: 16, posters: 4, perPost: 100}, runChats},
	{"rabbitmq", shape{instances: 1, chats: 1, posters: 4, perPost: 100}, runRabbitMQ},
	{"nats", shape{instances: 1, chats: 1, posters: 4, perPost: 100}, runNATS},
}

// eventsOf is how many events a scenario posts.
func eventsOf(sc scenario) int {
	switch sc.name {
	case "paced":
		return int(float64(*paceRate) * paceFor.Seconds())
	case "chats":
		return min(*events, chatsEvents)
	}
	return *events
}

func main() {
	if runChild(os.Args[1:]) {
		return
	}
	flag.Parse()
	if flag.NArg() > 0 {
		check(fmt.Errorf("unexpected arguments %q; see -help", flag.Args()))
	}
	check(setUp())
	defer tearDown()
	if *outage > 0 {
		l := newLoad("outage", shape{instances: 8, chats: 1, posters: 1, perPost: 1}, *events)
		check(runOutage(l))
		return
	}
	chosen, err := choose(*scenarioList)
	check(err)
	fmt.Printf("evorelay load: %d events a scenario of %d B data; sidecar backend %s%s\n",
		*events, *size, *backendName, strings.Join(append([]string{""}, sidecarEnv...), " "))
	var rows [][]row // each scenario's rounds
	failed := false
	for _, sc := range chosen {
		l := newLoad(sc.name, sc.shape, eventsOf(sc))
		fmt.Printf("\n== %s: %s\n", sc.name, l.describe())
		var rs []row
		for i := range max(*rounds, 1) {
			if *rounds > 1 {
				fmt.Printf("   -- round %d of %d\n", i+1, *rounds)
			}
			r, err := sc.run(l)
			if err != nil {
				fmt.Printf("   %s failed: %v\n", sc.name, err)
				failed = true
				continue
			}
			rs = append(rs, r)
		}
		if len(rs) > 0 {
			rows = append(rows, rs)
		}
	}
	if len(rows) > 1 || *rounds > 1 {
		printSummary(rows)
	}
	if failed {
		tearDown()
		os.Exit(1)
	}
}

// choose returns the scenarios a -scenario list names, in its order.
func choose(list string) ([]scenario, error) {
	var names []string
	for _, sc := range scenarios {
		names = append(names, sc.name)
	}
	var chosen []scenario
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "all" {
			return scenarios, nil
		}
		i := slices.Index(names, name)
		if i < 0 {
			return nil, fmt.Errorf("-scenario %q: expected %s or all", name, strings.Join(names, ", "))
		}
		if !slices.ContainsFunc(chosen, func(sc scenario) bool { return sc.name == name }) {
			chosen = append(chosen, scenarios[i])
		}
	}
	return chosen, nil
}

// row is one scenario's line of the closing summary.
type row struct {
	name     string
	bare     string // the baseline, as printed
	evorelay string
	ratio    float64
	goal     string
	// p99 is paced's latency, the figure its rounds are compared by (the
	// others' is ratio).
	p99 time.Duration
	// relay is the bare relay's ratio to bare (engine), 0 where none ran.
	relay float64
}

// figure is what the row's rounds are compared by, and how it is printed.
func (r row) figure() (float64, string) {
	if r.p99 > 0 {
		return float64(r.p99), "p99 " + round(r.p99).String()
	}
	return r.ratio, fmt.Sprintf("%.2f×", r.ratio)
}

// median returns a scenario's median round (the lower of the middle two),
// and every round's figure, in order.
func median(rounds []row) (row, string) {
	sorted := slices.Clone(rounds)
	slices.SortFunc(sorted, func(a, b row) int {
		fa, _ := a.figure()
		fb, _ := b.figure()
		return cmp.Compare(fa, fb)
	})
	var figures []string
	for _, r := range sorted {
		_, s := r.figure()
		figures = append(figures, s)
	}
	return sorted[(len(sorted)-1)/2], strings.Join(figures, ", ")
}

// rate is events/s of n events in d.
func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

func perSecond(r float64) string { return fmt.Sprintf("%.0f/s", r) }

// line prints one measurement: its name, events/s, and its ratio to bare
// unless it is the baseline itself (bare 0).
func line(name string, r, bare float64, extra string) {
	s := fmt.Sprintf("   %-46s %8.0f events/s", name, r)
	if bare != 0 {
		s += fmt.Sprintf("  %5.2f× bare", r/bare)
	}
	if extra != "" {
		s += "  " + extra
	}
	fmt.Println(s)
}

// printSummary prints each scenario's median round as one table, with
// every round's figure when there were several.
func printSummary(rows [][]row) {
	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	head := "scenario\tbare\tevorelay\tratio\tgoal"
	if *rounds > 1 {
		head += "\trounds, sorted (the median's figures are shown)"
	}
	fmt.Fprintln(w, head)
	for _, rs := range rows {
		r, all := median(rs)
		fmt.Fprintf(w, "%s\t%s\t%s\t%.2f×\t%s", r.name, r.bare, r.evorelay, r.ratio, r.goal)
		if *rounds > 1 {
			fmt.Fprintf(w, "\t%s", all)
		}
		fmt.Fprintln(w)
	}
	_ = w.Flush()
	for _, rs := range rows {
		if r, _ := median(rs); r.relay > 0 {
			fmt.Printf("%s: a bare relay (POST → memory → POST) reached %.2f× bare, and evorelay %.2f× the bare relay\n",
				r.name, r.relay, r.ratio/r.relay)
		}
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		tearDown()
		os.Exit(1)
	}
}

// setUp prepares what the flags ask for beyond one scenario: the -pprof
// directory and the Redis of -backend redis.
func setUp() error {
	if *pprofDir != "" {
		if err := os.MkdirAll(*pprofDir, 0o755); err != nil {
			return fmt.Errorf("-pprof: %w", err)
		}
	}
	return setUpBackend()
}

var tearDownOnce sync.Once

// tearDown deletes what the run left in Redis.
func tearDown() { tearDownOnce.Do(tearDownBackend) }

// runID names what one run creates on a broker, so that runs never meet.
func runID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// counter counts the distinct ids that arrived at a broker and says when
// all the expected ones have.
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

// wait returns once every expected id arrived, or fails at -timeout or
// when ctx ends.
func (c *counter) wait(ctx context.Context) error {
	select {
	case <-c.all:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("only %d of %d events arrived: %w", c.n.Load(), c.want, ctx.Err())
	case <-time.After(*timeout):
		return fmt.Errorf("only %d of %d events arrived within %s", c.n.Load(), c.want, *timeout)
	}
}
