package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The bare baselines that must run in a process of their own, as the
// sidecar does, run in a copy of this binary started with a hidden first
// argument (not a flag of the tool, so -help does not list them):
//
//	-serve-bare   an HTTP server on the listener passed as fd 3 that reads
//	              each body and answers 200; it ends when its stdin closes
//	-post-bare    one keep-alive client posting a load's webhook bodies one
//	              after the other; it prints the nanoseconds they took
//	-relay-bare   an HTTP server on the listener passed as fd 3 that answers
//	              each POST 202 at once and forwards its body, from memory,
//	              to -url over relayConns keep-alive connections: the least any
//	              relay of one POST in, one POST out does (nothing durable,
//	              no plugin, no parsing); it ends when its stdin closes
const (
	serveBareArg = "-serve-bare"
	postBareArg  = "-post-bare"
	relayBareArg = "-relay-bare"
)

// runChild runs the hidden mode args name, if they name one, and reports
// whether they did.
func runChild(args []string) bool {
	if len(args) == 0 {
		return false
	}
	var err error
	switch args[0] {
	case serveBareArg:
		err = serveBare()
	case postBareArg:
		err = postBare(args[1:])
	case relayBareArg:
		err = relayBare(args[1:])
	default:
		return false
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", args[0], err)
		os.Exit(1)
	}
	return true
}

// serveBare serves the inherited listener until stdin closes.
func serveBare() error {
	return serveInherited(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	})
}

// relayBare answers every POST 202 and forwards its body to -url; what it
// cannot forward ends it with an error (the run then fails: its events
// never arrive).
func relayBare(args []string) error {
	fs := flag.NewFlagSet(relayBareArg, flag.ContinueOnError)
	url := fs.String("url", "", "receiver")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bodies := make(chan []byte, 1<<16)
	client := newPostClient(relayConns)
	t := target{url: *url, want: http.StatusOK}
	for range relayConns {
		go func() {
			for b := range bodies {
				if err := postOne(context.Background(), client, t, request{body: b}); err != nil {
					fmt.Fprintf(os.Stderr, "bench %s: %v\n", relayBareArg, err)
					os.Exit(1)
				}
			}
		}()
	}
	return serveInherited(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			return // the readiness check
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		bodies <- b
	})
}

// serveInherited serves h on the listener passed as fd 3 until stdin
// closes.
func serveInherited(h http.HandlerFunc) error {
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = srv.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// bareServer is a -serve-bare or -relay-bare process.
type bareServer struct {
	url   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	logs  bytes.Buffer
}

// startBareServer starts a -serve-bare process (or the hidden mode args
// name) on a loopback listener it hands over, and returns once it answers.
func startBareServer(args ...string) (*bareServer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if len(args) == 0 {
		args = []string{serveBareArg}
	}
	b := &bareServer{url: "http://" + l.Addr().String(), cmd: exec.Command(self, args...)}
	b.cmd.ExtraFiles = []*os.File{f}
	b.cmd.Stderr = &b.logs
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(b.url + "/ready")
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("bare server: %w %s", err, b.logs.String())
	}
	resp.Body.Close()
	client.CloseIdleConnections()
	return b, nil
}

// stop closes the server's stdin, which ends it, and waits for it.
func (b *bareServer) stop() {
	_ = b.stdin.Close()
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-done
	}
}

// postBare posts the webhook bodies of a load (given by its flags) to
// -url one after the other from one keep-alive connection, and prints how
// long that took in nanoseconds.
func postBare(args []string) error {
	fs := flag.NewFlagSet(postBareArg, flag.ContinueOnError)
	url := fs.String("url", "", "receiver")
	n := fs.Int("events", 0, "events")
	fs.IntVar(size, "size", *size, "bytes of data per event")
	sh := shape{posters: 1, perPost: 1}
	fs.IntVar(&sh.instances, "instances", 1, "instances")
	fs.IntVar(&sh.chats, "chats", 1, "chats per instance")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reqs := newLoad("bare", sh, *n).webhookRequests(*url)
	client := newPostClient(1)
	t := target{url: *url, want: http.StatusOK}
	start := time.Now()
	for _, r := range reqs {
		if err := postOne(context.Background(), client, t, r); err != nil {
			return err
		}
	}
	fmt.Println(time.Since(start).Nanoseconds())
	return nil
}

// runBarePoster runs a -post-bare process for l's webhook bodies to url
// and returns how long its posts took.
func runBarePoster(ctx context.Context, l load, url string) (time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, self, postBareArg, "-url", url, "-events", strconv.Itoa(l.n),
		"-size", strconv.Itoa(*size), "-instances", strconv.Itoa(l.instances), "-chats", strconv.Itoa(l.chats))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("bare poster: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bare poster: printed %q", out)
	}
	return time.Duration(ns), nil
}
